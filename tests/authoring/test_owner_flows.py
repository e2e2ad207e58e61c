"""Issue #11: flows as owners write them. Each test replays what a new owner met."""

from __future__ import annotations

import re
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flowkit import ROOT

from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.errors import Diagnostic, FlowError
from orchestrator.flow.loader import load_flow_text
from orchestrator.flow.validate import check, validate
from orchestrator.model import Event, Outbound, Session
from orchestrator.plugins.connectors import ConnectorRegistry

SPEC = ROOT.parent / "shared" / "SPEC.md"
CONTACT = "+15555550123"
DENVER = ZoneInfo("America/Denver")


def loaded(text: str) -> Any:
    return load_flow_text(textwrap.dedent(text).lstrip("\n"), "owner.yaml")


def diagnostics(text: str) -> list[Diagnostic]:
    return validate(loaded(text), None)


def errors(text: str) -> list[Diagnostic]:
    return [d for d in diagnostics(text) if d.is_error]


def warnings(text: str) -> list[Diagnostic]:
    return [d for d in diagnostics(text) if not d.is_error]


class Chat:
    """One conversation on a checked flow (the verdict `serve` gives), on a fixed clock."""

    def __init__(self, text: str, *, channel: str = "sms", now: datetime | None = None,
                 business: str = "+15555550100") -> None:
        flow = check(loaded(text), None)
        self.engine = Engine(compile_flow(flow), ConnectorRegistry())
        self.now = (now or datetime(2026, 12, 2, 10, 0, tzinfo=DENVER)).timestamp()
        self.channel = channel
        self.session: Session = self.engine.new_session(
            f"{business}:{CONTACT}", business=business, contact=CONTACT, channel=channel, now=self.now)

    async def send(self, kind: str = "start", text: str | None = None) -> list[Outbound]:
        self.now += 5
        result = await self.engine.turn(self.session, Event(kind=kind, channel=self.channel, text=text),  # type: ignore[arg-type]
                                        self.now)
        self.session = result.session
        return result.messages

    async def say(self, text: str) -> list[str]:
        return [m.text for m in await self.send("text", text) if m.text]


# -- one verdict -------------------------------------------------------------------------------

def spec_example() -> str:
    text = SPEC.read_text(encoding="utf-8") if SPEC.is_file() else (ROOT / "docs" / "SPEC.md").read_text()
    match = re.search(r"## 3\..*?```yaml\n(.*?)```", text, re.S)
    assert match, "SPEC §3 has a yaml example"
    return match.group(1)


def test_the_spec_example_is_a_valid_flow_with_warnings_only() -> None:
    found = validate(load_flow_text(spec_example(), "spec3.yaml"), None)
    assert [d.format() for d in found if d.is_error] == []
    assert {d.message.split("'")[1] for d in found} == {"ask_name", "ask_time", "offer"}  # the fallback warnings
    check(load_flow_text(spec_example(), "spec3.yaml"))  # the verdict serve, chat and test share


def test_docs_spec_keeps_the_same_example() -> None:
    docs = (ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    assert spec_example().strip() in docs


async def test_an_ask_without_fail_gets_the_builtin_fallback_and_staff_hear_of_it() -> None:
    chat = Chat("""
        flow: plumber
        title: QuickFix Plumbing
        start: ask_name
        settings: {max_retries: 1, staff_notify: "+15555550199"}
        states:
          ask_name: {ask: "Your phone number?", input: phone, save: callback, next: bye}
          bye: {say: Thanks, end: done}
        """)
    await chat.send()
    await chat.say("purple")
    said = await chat.say("banana")
    assert chat.session.outcome == "not_understood"
    assert any("get back to you" in line for line in said)


# -- names -------------------------------------------------------------------------------------

async def test_the_flows_own_business_variable_wins_and_sys_business_is_the_builtin() -> None:
    text = """
        flow: plumber
        start: greet
        vars: {business: QuickFix Plumbing}
        states:
          greet: {say: "You've reached {{ business }} (line {{ sys.business }}).", end: done}
        """
    (warning,) = warnings(text)
    assert "hides the built-in 'business'" in warning.message and "sys.business" in (warning.hint or "")
    assert (warning.line, warning.col) == (3, 8)
    chat = Chat(text)
    (line,) = [m.text for m in await chat.send() if m.text]
    assert line == "You've reached QuickFix Plumbing (line +15555550100)."


async def test_a_builtin_never_hides_a_saved_answer() -> None:
    chat = Chat("""
        flow: t
        start: q
        states:
          q: {ask: "Which channel do you prefer?", save: channel, next: bye}
          bye: {say: "We'll use {{ channel }} (you wrote on {{ sys.channel }}).", end: done}
        """)
    await chat.send()
    assert await chat.say("email") == ["We'll use email (you wrote on sms)."]


def test_sys_is_reserved_and_sys_names_are_checked() -> None:
    found = errors("""
        flow: t
        start: a
        vars: {sys: 1}
        states:
          a: {say: "{{ sys.busines }}", end: done}
        """)
    assert any("'sys' is reserved" in d.message for d in found)
    assert any("'sys.busines'" in d.message and "business" in (d.hint or "") for d in found)


# -- template safety ---------------------------------------------------------------------------

@pytest.mark.parametrize(("template", "fragment"), [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "'.__class__'"),
    ("{{ x['__class__'] }}", "['__class__']"),
    ("{{ x | attr('__dict__') }}", "'attr' filter"),
    ("{% include 'other.yaml' %}", "'include' is not available"),
    ("{{ 'a'.format(x) }}", "'.format'"),
    ("{% if x is frobnicated %}y{% endif %}", "unknown test 'frobnicated'"),
])
def test_unsafe_templates_are_refused_at_their_line_and_column(template: str, fragment: str) -> None:
    text = f"flow: t\nstart: a\nvars: {{x: 1}}\nstates:\n  a:\n    say: \"{template}\"\n    end: done\n"
    found = [d for d in validate(load_flow_text(text, "t.yaml"), None) if d.is_error]
    assert found, f"{template} validated"
    d = found[0]
    assert fragment in d.message and d.line == 6 and d.col > 10, d.format()


# -- definite assignment -----------------------------------------------------------------------

INTENT_GAP = """
    flow: vet
    start: greet
    intents:
      agent: {match: [agent, human], goto: thanks}
    states:
      greet: {say: "Hi!", next: menu}
      menu:
        ask: "Book or hours?"
        choices: {book: {label: Book}, hours: {label: Hours}}
        on: {book: ask_name, hours: bye, fail: bye}
      ask_name: {ask: "Your name?", input: name, save: name, on: {fail: bye}, next: thanks}
      thanks: {say: "Thanks {{ name }}, someone will call you.", end: handed_off}
      bye: {say: "Bye", end: done}
    """


def test_a_variable_unset_on_an_intent_path_is_an_error_naming_that_path() -> None:
    (d,) = errors(INTENT_GAP)
    assert d.message == ("state 'thanks' uses 'name', which is not set on every path that reaches it: "
                         "greet → menu → (intent agent) → thanks")
    assert (d.line, d.col) == (12, 17) and "is defined" in (d.hint or "")


def test_a_fail_route_to_a_question_using_the_failed_value_is_an_error() -> None:
    (d,) = errors("""
        flow: salon
        start: ask_time
        states:
          ask_time: {ask: "When?", input: datetime, save: wanted, next: confirm, on: {fail: ask_again}}
          ask_again: {ask: "We could not read {{ wanted | datetime }}. What day works?", next: bye}
          confirm: {say: "See you {{ wanted | datetime }}", end: booked}
          bye: {say: "Bye", end: done}
        """)
    assert "state 'ask_again' uses 'wanted'" in d.message and "ask_time → (fail) → ask_again" in d.message


def test_guarded_and_defaulted_variables_pass() -> None:
    assert errors("""
        flow: t
        start: q
        vars: {greeting: Hi}
        states:
          q: {ask: "Name?", input: name, save: name, on: {fail: bye}, next: bye}
          bye: {say: "{{ greeting }}{% if name is defined %} {{ name }}{% endif %} {{ name | default('') }}", end: done}
        """) == []


async def test_at_run_time_an_unset_variable_renders_empty_and_the_turn_goes_on() -> None:
    text = textwrap.dedent(INTENT_GAP)
    flow = load_flow_text(text, "vet.yaml")  # skip the verdict: this is what a stale revision would do
    engine = Engine(compile_flow(flow), ConnectorRegistry())
    session = engine.new_session("b:c", business="b", contact=CONTACT, channel="sms", now=0.0)
    session = (await engine.turn(session, Event(kind="start", channel="sms"), 1.0)).session
    result = await engine.turn(session, Event(kind="text", channel="sms", text="agent"), 2.0)
    assert [m.text for m in result.messages if m.text] == ["Thanks , someone will call you."]
    assert result.session.outcome == "handed_off"


# -- yes_no ------------------------------------------------------------------------------------

async def test_a_yes_no_ask_routes_on_yes_and_no() -> None:
    text = """
        flow: t
        start: q
        states:
          q: {ask: "Is it an emergency?", input: yes_no, save: urgent, on: {yes: now, no: later, fail: later}}
          now: {say: "Sending someone now.", end: emergency}
          later: {say: "We'll book you in.", end: booked}
        """
    assert errors(text) == []
    chat = Chat(text)
    await chat.send()
    assert await chat.say("yes please") == ["Sending someone now."]
    assert chat.session.vars["urgent"] is True
    chat = Chat(text)
    await chat.send()
    assert await chat.say("nope") == ["We'll book you in."]


def test_a_yes_no_without_next_must_route_both_answers() -> None:
    (d,) = errors("""
        flow: t
        start: q
        states:
          q: {ask: "Emergency?", input: yes_no, on: {yes: a, fail: a}}
          a: {end: done}
        """)
    assert "the answer 'no' has no route" in d.message


def test_comparing_a_yes_no_answer_with_text_is_an_error() -> None:
    (d,) = errors("""
        flow: t
        start: q
        states:
          q: {ask: "Emergency?", input: yes_no, save: answer, next: b, on: {fail: a}}
          b:
            branch:
              - {when: "answer == 'yes'", goto: a}
              - {goto: a}
          a: {end: done}
        """)
    assert "a yes_no answer is saved as true or false" in d.message and "on: {yes: ..., no: ...}" in (d.hint or "")


# -- hours -------------------------------------------------------------------------------------

HOURS = """
    flow: hvac
    start: b
    settings:
      timezone: America/Denver
      business_hours: {mon: "08:00-17:00", sat: "09:00-13:00"}
      closed_dates: ["2026-12-07"]
    states:
      b:
        branch:
          - {when: open_now, goto: open}
          - {goto: closed}
      open: {say: "We're open.", end: done}
      closed: {say: "We're closed; we open {{ next_open | datetime }}.", end: done}
    """


@pytest.mark.parametrize(("when", "said"), [
    (datetime(2026, 12, 5, 10, 0, tzinfo=DENVER), "We're open."),  # Saturday morning
    (datetime(2026, 12, 5, 14, 0, tzinfo=DENVER), "We're closed; we open Sat 12 Dec, 9:00 AM."),  # Mon 7 closed
    (datetime(2026, 12, 2, 10, 0, tzinfo=DENVER), "We're closed; we open Sat 5 Dec, 9:00 AM."),  # Wed: not listed
    (datetime(2026, 12, 14, 7, 30, tzinfo=DENVER), "We're closed; we open Mon 14 Dec, 8:00 AM."),
])
async def test_open_now_and_next_open_in_conditions(when: datetime, said: str) -> None:
    assert errors(HOURS) == []
    chat = Chat(HOURS, now=when)
    chat.now = when.timestamp() - 5
    assert [m.text for m in await chat.send() if m.text] == [said]


def test_days_not_listed_in_business_hours_are_closed() -> None:
    flow = check(loaded(HOURS), None).flow
    hours = flow.settings.business_hours
    assert hours.sat == "09:00-13:00" and hours.mon == "08:00-17:00" and hours.tue is None and hours.fri is None
    default = check(loaded("flow: t\nstart: a\nstates:\n  a: {end: done}\n"), None).flow.settings.business_hours
    assert default.mon == "09:00-17:00" and default.sat is None


def test_a_flow_error_is_one_verdict_for_every_command() -> None:
    with pytest.raises(FlowError) as info:
        check(loaded(INTENT_GAP), None)
    assert all(d.is_error for d in info.value.diagnostics)


def test_validate_strict_fails_on_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.flow.validate import main_validate

    path = tmp_path / "spec3.yaml"
    path.write_text(spec_example(), encoding="utf-8")
    assert main_validate([str(path)]) == 0
    assert main_validate([str(path)], strict=True) == 1
    out = capsys.readouterr().out
    assert "warning: state 'ask_name' relies on the built-in fallback" in out and "(--strict)" in out


# -- intents and choices -----------------------------------------------------------------------

def test_an_intent_phrase_inside_a_choice_label_is_a_warning_at_the_choice() -> None:
    found = warnings("""
        flow: salon
        start: q
        intents:
          cancel: {match: [da igual, cancelar], goto: bye}
        states:
          q:
            ask: "¿Qué día?"
            choices: {any: {label: Me da igual}, mon: {label: Lunes}}
            on: {any: bye, mon: bye, fail: bye}
          bye: {end: done}
        """)
    (d,) = [d for d in found if "overlaps" in d.message]
    assert "choice 'any' (label 'Me da igual') overlaps the intent 'cancel' phrase 'da igual'" in d.message
    assert d.line == 8


# -- per-channel limits ------------------------------------------------------------------------

def test_whatsapp_and_sms_limits_are_warnings_naming_the_rendering_used_instead() -> None:
    rows = ", ".join(f"k{i}: {{label: Row {i}}}" for i in range(12))
    long_text = "We will call you back. " * 25
    found = warnings(f"""
        flow: wa
        start: a
        states:
          a:
            ask: "Pick one"
            choices: {{x: {{label: "This label is far too long for a WhatsApp button"}}, y: {{label: Short}}}}
            on: {{x: b, y: b, fail: b}}
          b:
            ask: "Pick a row"
            choices: {{{rows}}}
            next: c
            on: {{fail: c}}
          c: {{say: "{long_text}", end: done}}
        """)
    messages = [d.message for d in found]
    assert any("on whatsapp: the button title 'This label is far too long for a WhatsApp button' has 48 "
               "characters, at most 20 fit: it shows as 'This label is far…'" in m for m in messages), messages
    assert any("on whatsapp: 12 choices: a list holds at most 10 rows, so they are sent as a numbered text menu"
               in m for m in messages)
    assert any("state 'c' on sms: the text is about 4 segments, over the budget of 3" in m
               and "sent as 2 messages" in m for m in messages)
