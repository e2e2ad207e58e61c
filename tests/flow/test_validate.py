"""Malformed flows give one precise diagnostic each: message, hint, line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import FlowError
from orchestrator.flow.loader import load_flow, load_flow_text
from orchestrator.flow.validate import check, default_connectors, main_validate, validate
from orchestrator.plugins.connectors import Action, CallContext, ConnectorRegistry, ConnectorResult

from .conftest import FLOWS, problems

_Args = dict  # takes any arguments (a Struct would name the ones it takes)


async def _noop(args: Any, ctx: CallContext) -> ConnectorResult:
    return ConnectorResult(outcome="ok")


class FakeCalendar:
    name = "calendar"
    actions = {"find_slots": Action(_Args, _noop), "book": Action(_Args, _noop)}


class FullCalendar:
    name = "calendar"
    actions = {a: Action(_Args, _noop) for a in ("find_slots", "book", "cancel", "reschedule", "list_bookings")}


def registry() -> ConnectorRegistry:
    reg = ConnectorRegistry()
    reg.register(FakeCalendar())
    return reg


GOOD = """
flow: demo
title: Demo Dental
start: greet
vars: {clinic: Demo Dental}
intents:
  agent: {match: [agent, human], dtmf: "0", goto: staff}
states:
  greet:
    say: "Hi from {{ clinic }}!"
    next: menu
  menu:
    ask: Book a visit or hear our hours?
    choices:
      book: {label: Book, dtmf: "1"}
      hours: {label: Hours, dtmf: "2"}
    on: {book: ask_time, hours: hours, fail: staff}
  ask_time:
    ask: When?
    input: datetime
    save: wanted
    next: find
    on: {fail: staff}
  find:
    call: calendar.find_slots
    args: {around: "{{ wanted }}", count: 3}
    save: slots
    on: {ok: offer, empty: staff, error: staff}
  offer:
    ask: "Which one? {{ slots | join(', ') }}"
    choices_from: slots
    choices:
      other: {label: None of these}
    save: slot
    next: book
    on: {other: ask_time, fail: staff, slots_1: book}
  book:
    call: calendar.book
    args: {slot: "{{ slot }}"}
    save: booking
    next: route
  route:
    branch:
      - {when: "contact.known and booking", goto: done}
      - {goto: done}
  done:
    say: "Booked {{ booking.label }} for {{ contact.name or 'you' }}. {% for s in slots %}{{ s.label }}{% endfor %}"
    end: booked
  hours:
    say: "We are open {{ now }} on {{ channel }}."
    end: info
  staff:
    handoff: "+15555550199"
    say: Connecting you.
    on: {no_answer: voicemail}
    end: handed_off
  voicemail:
    record: Leave a message.
    notice: true
    save: message
    next: thanks
  thanks:
    say: Thanks!
    end: message_taken
"""


def test_good_flow_is_valid_with_connectors() -> None:
    assert problems(GOOD, registry()) == []


def test_good_flow_check_returns_loaded() -> None:
    loaded = load_flow_text(GOOD.lstrip("\n"), "good.yaml")
    assert check(loaded, registry()) is loaded


# (name, yaml, fragment of the message, hint fragment or None, line, col or None)
CASES: list[tuple[str, str, str, str | None, int, int | None]] = [
    ("unknown_key", """
        flow: demo
        start: greet
        states:
          greet:
            say: Hi
            nxt: bye
          bye: {end: done}
        """, "unknown key 'nxt' in state 'greet'", "did you mean 'next'?", 6, 5),
    ("unknown_target", """
        flow: demo
        start: greet
        states:
          greet:
            say: Hi
            next: by
          bye: {end: done}
        """, "state 'greet' goes to unknown state 'by'", "did you mean 'bye'?", 6, 11),
    ("unknown_start", """
        flow: demo
        start: gret
        states:
          greet: {say: Hi, end: done}
        """, "start state 'gret' does not exist", "did you mean 'greet'?", 2, 8),
    ("missing_start", """
        flow: demo
        states:
          greet: {say: Hi, end: done}
        """, "the flow file is missing the required key 'start'", "add 'start:'", 1, 1),
    ("call_route_typo", """
        flow: demo
        start: find
        states:
          find:
            call: calendar.find_slots
            on: {okk: bye, error: bye}
          bye: {end: done}
        """, "state 'find' has no outcome 'okk' to route", "did you mean 'ok'?", 6, 10),
    ("ask_route_typo", """
        flow: demo
        start: menu
        states:
          menu:
            ask: Which?
            choices: {book: {label: Book}, hours: {label: Hours}}
            on: {book: bye, hour: bye, fail: bye}
          bye: {end: done}
        """, "state 'menu' has no outcome 'hour' to route", "did you mean 'hours'?", 7, 21),
    ("unreachable", """
        flow: demo
        start: greet
        states:
          greet: {say: Hi, end: done}
          orphan: {say: Lost, end: done}
        """, "state 'orphan' is never reached from the start state 'greet'", "delete it", 5, 3),
    ("say_dead_end", """
        flow: demo
        start: greet
        states:
          greet:
            say: Hi
        """, "state 'greet' is a dead end: it has neither 'next' nor 'end'", "add 'next: <state>'", 4, 3),
    ("call_dead_end", """
        flow: demo
        start: find
        states:
          find:
            call: calendar.find_slots
            on: {error: bye}
          bye: {end: done}
        """, "state 'find' is a dead end: it has neither 'next' nor 'on: {ok: ...}'", None, 4, 3),
    ("handoff_dead_end", """
        flow: demo
        start: staff
        states:
          staff:
            handoff: "+15555550199"
            on: {no_answer: bye}
          bye: {end: done}
        """, "state 'staff' is a dead end", "'end: <outcome>'", 4, 3),
    ("ask_without_fail", """
        flow: demo
        start: menu
        states:
          menu:
            ask: Which?
            choices: {book: {label: Book}}
            next: bye
          bye: {end: done}
        """, "state 'menu' relies on the built-in fallback", "defaults: {fail: <state>}", 4, 3),
    ("ask_choice_unrouted", """
        flow: demo
        start: menu
        states:
          menu:
            ask: Which?
            choices: {book: {label: Book}, hours: {label: Hours}}
            on: {book: bye, fail: bye}
          bye: {end: done}
        """, "state 'menu' is a dead end: choice 'hours' has no route", None, 4, 3),
    ("unknown_action", """
        flow: demo
        start: find
        states:
          find:
            call: calendar.fnd_slots
            next: bye
          bye: {end: done}
        """, "state 'find' calls unknown action 'calendar.fnd_slots'", "did you mean 'calendar.find_slots'?", 5, 11),
    ("unknown_connector", """
        flow: demo
        start: find
        states:
          find:
            call: calender.book
            next: bye
          bye: {end: done}
        """, "state 'find' calls unknown connector 'calender'", "did you mean 'calendar'?", 5, 11),
    ("template_syntax_block", """
        flow: demo
        start: greet
        states:
          greet:
            say: |
              Hello there.
              Today is {{ now }
            end: done
        """, "state 'greet': template error:", "{{ name }}", 7, 1),
    ("unknown_variable", """
        flow: demo
        start: greet
        vars: {clinic: Demo}
        states:
          greet:
            say: "Welcome to {{ clnic }}"
            end: done
        """, "state 'greet' uses variable 'clnic', which nothing sets", "did you mean 'clinic'?", 6, 10),
    ("unknown_variable_in_args", """
        flow: demo
        start: book
        states:
          book:
            call: calendar.book
            args: {slot: "{{ slot }}"}
            next: bye
          bye: {end: done}
        """, "state 'book' uses variable 'slot', which nothing sets", "save: it", 6, 18),
    ("unknown_filter", """
        flow: demo
        start: greet
        vars: {items: [a, b]}
        states:
          greet:
            say: "{{ items | jion(', ') }}"
            end: done
        """, "state 'greet' uses unknown filter 'jion'", "did you mean 'join'?", 6, 22),
    ("bad_duration", """
        flow: demo
        start: greet
        settings:
          no_reply_timeout: 10 minutes
        states:
          greet: {say: Hi, end: done}
        """, "'settings.no_reply_timeout': bad duration '10 minutes'", "e.g. 30s, 10m", 4, 21),
    ("bad_timezone", """
        flow: demo
        start: greet
        settings:
          timezone: America/New_Yrok
        states:
          greet: {say: Hi, end: done}
        """, "unknown timezone 'America/New_Yrok'", "did you mean 'America/New_York'?", 4, 13),
    ("bad_language", """
        flow: demo
        start: greet
        settings: {language: en_US}
        states:
          greet: {say: Hi, end: done}
        """, "bad language tag 'en_US'", "did you mean 'en-US'?", 3, 22),
    ("bad_pattern", """
        flow: demo
        start: zip
        states:
          zip:
            ask: Your ZIP code?
            pattern: "^[0-9{5}$"
            save: zip
            next: bye
            on: {fail: bye}
          bye: {end: done}
        """, "state 'zip': bad pattern '^[0-9{5}$'", "regular expression", 6, 14),
    ("dtmf_not_a_key", """
        flow: demo
        start: menu
        states:
          menu:
            ask: Which?
            choices: {book: {label: Book, dtmf: "A"}}
            on: {book: bye, fail: bye}
          bye: {end: done}
        """, "state 'menu' choice 'book': keypad key 'A' is not a phone key", "0-9, * or #", 6, 41),
    ("dtmf_twice", """
        flow: demo
        start: menu
        states:
          menu:
            ask: Which?
            choices:
              book: {dtmf: "1"}
              hours: {dtmf: 1}
            on: {book: bye, hours: bye, fail: bye}
          bye: {end: done}
        """, "keypad key '1' is used by both choice 'book' and choice 'hours'", "its own key", 8, 21),
    ("dtmf_clash_with_intent", """
        flow: demo
        start: menu
        intents:
          agent: {match: [agent], dtmf: "0", goto: bye}
        states:
          menu:
            ask: Which?
            choices:
              book: {dtmf: "0"}
            on: {book: bye, fail: bye}
          bye: {end: done}
        """, "keypad key '0' is already the key of the global intent 'agent'", "pick another key", 9, 20),
    ("choice_without_choices", """
        flow: demo
        start: menu
        states:
          menu:
            ask: Which?
            input: choice
            next: bye
            on: {fail: bye}
          bye: {end: done}
        """, "state 'menu' asks for a choice but lists no choices", "add 'choices:'", 6, 12),
    ("choices_from_unset", """
        flow: demo
        start: offer
        states:
          offer:
            ask: Which time?
            choices_from: slot
            save: picked
            next: bye
            on: {fail: bye}
          bye: {end: done}
        """, "takes its choices from 'slot', which nothing sets", "save: a list", 6, 19),
    ("branch_when_bad", """
        flow: demo
        start: route
        states:
          route:
            branch:
              - {when: "contact.known ==", goto: bye}
              - {goto: bye}
          bye: {end: done}
        """, "state 'route': the condition 'contact.known ==' does not compile", "jinja2 expression", 6, 16),
    ("branch_two_otherwise", """
        flow: demo
        start: route
        states:
          route:
            branch:
              - {goto: bye}
              - {goto: bye}
          bye: {end: done}
        """, "state 'route' has more than one branch case without 'when'", "only the last case", 7, 9),
    ("branch_no_otherwise", """
        flow: demo
        start: route
        states:
          route:
            branch:
              - {when: contact.known, goto: bye}
          bye: {end: done}
        """, "no branch case without 'when'", "add a last case", 6, 7),
    ("business_hours", """
        flow: demo
        start: greet
        settings:
          business_hours: {mon: "9-17"}
        states:
          greet: {say: Hi, end: done}
        """, "bad opening hours for mon: '9-17'", '"09:00-17:00"', 4, 25),
    ("business_hours_backwards", """
        flow: demo
        start: greet
        settings:
          business_hours:
            tue: "17:00-09:00"
        states:
          greet: {say: Hi, end: done}
        """, "'17:00-09:00' ends before it starts", None, 5, 10),
    ("closed_date", """
        flow: demo
        start: greet
        settings:
          closed_dates: ["2026-12-25", "25/12/2026"]
        states:
          greet: {say: Hi, end: done}
        """, "closed date '25/12/2026' is not a date", "YYYY-MM-DD", 4, 32),
    ("flow_id", """
        flow: Demo Flow
        start: greet
        states:
          greet: {say: Hi, end: done}
        """, "flow id 'Demo Flow' may only hold lowercase letters, digits and _", "e.g. demo_flow", 1, 7),
    ("duplicate_key", """
        flow: demo
        start: greet
        states:
          greet: {say: Hi, end: done}
          greet: {say: Ho, end: done}
        """, "duplicate key 'greet' in 'states' (first at line 4:3)", "silently keep only the last", 5, 3),
    ("yaml_syntax", """
        flow: demo
        start: greet
        states:
          greet:
            say: Note: we are closed
            end: done
        """, "YAML syntax error: this text contains ': '", "quotes", 5, 14),
    ("no_kind", """
        flow: demo
        start: greet
        states:
          greet:
            sya: Hi
            end: done
          other: {say: x}
        """, "unknown key 'sya' in state 'greet'", "did you mean 'say'?", 5, 5),
    ("kindless_state", """
        flow: demo
        start: greet
        states:
          greet:
            nxt: bye
          bye: {end: done}
        """, "state 'greet' has no kind: give it one of the keys ask, call, branch", None, 4, 3),
    ("intent_unknown_goto", """
        flow: demo
        start: greet
        intents:
          agent: {match: [agent], goto: staf}
        states:
          greet: {say: Hi, end: done}
          staff: {handoff: "+15555550199", end: handed_off}
        """, "intent 'agent' goes to unknown state 'staf'", "did you mean 'staff'?", 4, 33),
    ("bad_input_kind", """
        flow: demo
        start: when
        states:
          when:
            ask: When?
            input: datetme
            next: bye
            on: {fail: bye}
          bye: {end: done}
        """, "state 'when' key 'input': 'datetme' is not allowed", "did you mean 'datetime'?", 6, 12),
    ("top_level_list", """
        - flow: demo
        """, "a flow file must be a mapping at the top, found a list", "flow: my_flow", 1, 1),
    ("wrong_type", """
        flow: demo
        start: greet
        states:
          greet:
            say: Hi
            next: [a, b]
        """, "state 'greet' key 'next' should be text, found a list", None, 6, 11),
    ("handoff_not_a_phone", """
        flow: demo
        start: staff
        states:
          staff:
            handoff: 555-0199
            end: handed_off
        """, "state 'staff' hands off to '555-0199', which is not a phone number in international form", "E.164",
        5, 14),
    ("staff_notify_not_a_phone", """
        flow: demo
        start: greet
        settings: {staff_notify: "front desk"}
        states:
          greet: {say: Hi, end: done}
        """, "settings.staff_notify is 'front desk', which is not a phone number", "E.164", 3, 26),
    ("reminder_template", """
        flow: demo
        start: greet
        settings:
          reminder: "Still there, {{ contact.name }? "
        states:
          greet: {say: Hi, end: done}
        """, "settings.reminder: template error:", None, 4, 13),
    ("save_builtin", """
        flow: demo
        start: ask
        states:
          ask:
            ask: Your name?
            input: text
            save: contact
            next: bye
          bye: {end: done}
        """, "state 'ask' saves into 'contact' hides the built-in 'contact'", "reachable as 'sys.contact'", 7, 11),
]


@pytest.mark.parametrize(("name", "text", "fragment", "hint", "line", "col"), CASES, ids=[c[0] for c in CASES])
def test_malformed_flow(name: str, text: str, fragment: str, hint: str | None, line: int, col: int | None) -> None:
    found = problems(text, registry())
    matching = [d for d in found if fragment in d.message]
    assert matching, f"no diagnostic containing {fragment!r}; got:\n" + "\n".join(d.format() for d in found)
    d = matching[0]
    assert (d.line, d.col if col is not None else None) == (line, col), d.format()
    assert d.file == "t.yaml"
    if hint is not None:
        assert d.hint is not None and hint in d.hint, d.format()


def test_cases_are_distinct_and_many() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 22
    assert len({c[2] for c in CASES}) == len(CASES)


def test_ints_for_strings_are_the_text_written() -> None:
    loaded = load_flow_text(
        "flow: demo\nstart: menu\nstates:\n  menu:\n    ask: Which?\n"
        "    choices: {book: {dtmf: 01, match: [yes, no]}}\n    on: {book: bye, fail: bye}\n"
        "  bye: {end: done}\n", "t.yaml",
    )
    choice = loaded.flow.states["menu"].choices["book"]  # type: ignore[union-attr]
    assert choice.dtmf == "01"
    assert choice.match == ["yes", "no"]
    assert validate(loaded) == []


def test_many_problems_are_all_reported_sorted() -> None:
    found = problems("""
        flow: demo
        start: greet
        states:
          greet:
            say: "{{ nobody }}"
            next: nowhere
          orphan: {say: x}
        """)
    lines = [d.line for d in found]
    assert lines == sorted(lines)
    texts = " | ".join(d.message for d in found)
    for fragment in ("variable 'nobody'", "unknown state 'nowhere'", "'orphan' is never reached",
                     "'orphan' is a dead end"):
        assert fragment in texts


def test_connector_check_skipped_without_registry() -> None:
    text = "flow: demo\nstart: f\nstates:\n  f: {call: crm.lookup, next: b}\n  b: {end: done}\n"
    assert problems(text, None) == []
    assert [d.message for d in problems(text, registry())] == ["state 'f' calls unknown connector 'crm'"]


def test_call_must_name_connector_and_action() -> None:
    text = "flow: demo\nstart: f\nstates:\n  f: {call: lookup, next: b}\n  b: {end: done}\n"
    (d,) = problems(text, None)
    assert d.message == "state 'f' calls 'lookup', which is not 'connector.action'"
    assert (d.line, d.col) == (4, 13)


def test_format_is_file_line_col_message_hint() -> None:
    found = problems("flow: demo\nstart: a\nstates:\n  a: {say: x, next: bb}\n  b: {end: done}\n")
    assert [d.format() for d in found] == [
        "t.yaml:4:21: state 'a' goes to unknown state 'bb' (hint: did you mean 'b'?)",
    ]
    found = problems("flow: demo\nstart: a\nstates:\n  a: {say: x, end: done}\n  b: {say: y, end: done}\n")
    assert [d.format() for d in found] == [
        "t.yaml:5:3: state 'b' is never reached from the start state 'a' "
        "(hint: route to it with next/on/goto from another state, or delete it)",
    ]


def test_a_misspelt_target_is_one_problem_not_every_state_behind_it() -> None:
    found = problems("""
        flow: demo
        start: a
        intents:
          agent: {match: [agent], goto: staf}
        states:
          a: {ask: Name?, next: ask_reasn}
          ask_reason: {ask: Why?, next: c}
          c: {say: x, next: d}
          d: {say: y, end: done}
          staff: {say: z, end: handed}
        """)
    assert [d.message for d in found] == [
        "intent 'agent' goes to unknown state 'staf'",
        "state 'a' goes to unknown state 'ask_reasn'",
    ]


def test_only_the_root_of_an_unreached_chain_is_reported() -> None:
    found = problems("""
        flow: demo
        start: a
        states:
          a: {say: x, next: nowhere_at_all}
          lost: {say: y, next: lost2}
          lost2: {say: z, next: lost3}
          lost3: {say: w, next: lost2}
          island: {say: v, next: island2}
          island2: {say: u, next: island}
        """)
    messages = [d.message for d in found]
    assert messages == [
        "state 'a' goes to unknown state 'nowhere_at_all'",
        "state 'lost' is never reached from the start state 'a'",
        "state 'island' is never reached from the start state 'a'",
    ]


def test_intents_reach_states_from_every_ask() -> None:
    text = """
        flow: demo
        start: q
        intents:
          agent: {match: [agent], goto: staff}
        states:
          q: {ask: Name?, input: text, save: n, next: bye}
          bye: {end: done}
          staff: {handoff: "+15555550199", end: handed_off}
        """
    assert problems(text) == []


@pytest.mark.parametrize("path", FLOWS, ids=[p.name for p in FLOWS])
def test_shipped_flows_are_valid(path: Path) -> None:
    loaded = load_flow(path)
    assert validate(loaded, default_connectors()) == []
    calendar = ConnectorRegistry()
    calendar.register(FullCalendar())
    assert validate(loaded, calendar) == [], "the shipped flows use only the calendar's five actions"


def test_main_validate_output_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("flow: demo\nstart: a\nstates:\n  a: {say: Hi, end: done}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: demo\nstart: a\nstates:\n  a: {say: Hi, next: c}\n")
    assert main_validate([str(good)]) == 0
    assert capsys.readouterr().out == "1 file checked: all valid\n"
    assert main_validate([str(good), str(bad), str(tmp_path / "missing.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{bad}:4:22: state 'a' goes to unknown state 'c' (hint: states are: a)"
    assert out[1].startswith(f"{tmp_path / 'missing.yaml'}:1:1: cannot read the flow file")
    assert out[-1] == "3 files checked: 2 invalid, 2 errors"


def test_check_raises_flow_error_with_all_diagnostics() -> None:
    loaded = load_flow_text("flow: demo\nstart: a\nstates:\n  a: {say: Hi}\n  b: {end: x}\n", "t.yaml")
    with pytest.raises(FlowError) as info:
        check(loaded)
    assert len(info.value.diagnostics) == 2
    assert "t.yaml:4:3: state 'a' is a dead end" in str(info.value)


@pytest.mark.parametrize("mutation", ["delete", "duplicate", "dedent", "truncate"])
def test_every_line_mutation_gives_diagnostics_never_a_crash(mutation: str) -> None:
    lines = GOOD.strip("\n").splitlines()
    for i in range(len(lines)):
        changed = list(lines)
        if mutation == "delete":
            del changed[i]
        elif mutation == "duplicate":
            changed.insert(i, lines[i])
        elif mutation == "dedent":
            changed[i] = lines[i][2:]
        else:
            changed[i] = lines[i][: len(lines[i]) // 2]
        text = "\n".join(changed) + "\n"
        found = problems(text, registry())  # any exception other than FlowError fails the test
        for d in found:
            assert 1 <= d.line <= len(changed) + 1 and d.col >= 1, (i, d.format())
            assert d.message and d.file == "t.yaml"


def test_an_argument_the_connector_does_not_take_is_refused_at_its_line() -> None:
    text = """\
flow: demo
start: find
states:
  find:
    call: calendar.find_slots
    args: {around: "2026-12-03T10:00", stylist: Ana, cuont: 3}
    save: slots
    on: {ok: b, empty: b, error: b}
  b: {say: bye, end: done}
"""
    found = problems(text, default_connectors())
    assert [(d.message, d.line, d.col) for d in found] == [
        ("calendar.find_slots has no argument 'stylist'", 6, 40),
        ("calendar.find_slots has no argument 'cuont'", 6, 54),
    ]
    assert "around" in (found[0].hint or "") and found[1].hint == "did you mean 'count'?"


@pytest.mark.parametrize(("staff", "arg", "message"), [
    ("", "ana", "state 'find' books with staff 'ana', but the flow declares no staff"),
    (", staff: {ana: {name: Ana}, luis: {}}", "anna", "'anna' is not one of settings.staff"),
])
def test_a_staff_argument_names_one_of_settings_staff(staff: str, arg: str, message: str) -> None:
    text = f"""\
flow: demo
start: find
settings: {{timezone: UTC{staff}}}
states:
  find:
    call: calendar.find_slots
    args: {{around: "2026-12-03T10:00", staff: {arg}}}
    save: slots
    on: {{ok: b, empty: b, error: b}}
  b: {{say: bye, end: done}}
"""
    found = problems(text, default_connectors())
    assert [d.message for d in found] == [message] and found[0].line == 7
    ok = text.replace(f"staff: {arg}}}", "staff: any}") if staff else None
    if ok:
        assert problems(ok, default_connectors()) == []


def test_resource_is_checked_like_staff_and_a_name_is_accepted() -> None:
    text = """\
flow: demo
start: find
settings: {timezone: UTC, staff: {ana: {name: Ana}, chair_2: {name: Chair two}}}
states:
  find:
    call: calendar.find_slots
    args: {around: "2026-12-03T10:00", resource: chair2}
    save: slots
    on: {ok: b, empty: b, error: b}
  b: {say: bye, end: done}
"""
    found = problems(text, default_connectors())
    assert [(d.message, d.line, d.hint) for d in found] == [
        ("'chair2' is not one of settings.staff", 7, "did you mean 'chair_2'?")]
    assert problems(text.replace("resource: chair2", "resource: Chair two"), default_connectors()) == []


def test_booking_rules_and_a_persons_week_are_checked_where_they_are_written() -> None:
    text = """\
flow: demo
start: b
settings:
  timezone: UTC
  min_notice: 2h
  max_ahead: 1h
  max_per_day: 0
  staff:
    ana: {name: Ana, hours: {tue: "10:00-9:00"}, days_off: ["2026-13-01"]}
states:
  b: {say: bye, end: done}
"""
    found = {d.message.split(" (")[0].split(":")[0]: (d.line, d.hint) for d in problems(text, default_connectors())}
    assert found["bad opening hours for tue"][0] == 9
    assert found["day off '2026-13-01' is not a date"][0] == 9
    assert found["settings.max_per_day must be 1 or more, found 0"][0] == 7
    assert found["settings.max_ahead"][0] == 6 and "max_ahead" in str(found["settings.max_ahead"][1])
