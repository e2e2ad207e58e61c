"""Sandboxed templates: rendering, native values for connector args, filters, and the sandbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jinja2
import pytest

from orchestrator.errors import OrchestratorError
from orchestrator.flow.templates import (
    CompiledArgs,
    TemplateEngine,
    TemplateError,
    expression_variables,
    template_variables,
)

NY = "America/New_York"
SLOT = {"start": "2026-11-26T15:30:00-05:00", "end": "2026-11-26T16:00:00-05:00", "label": "Thu 26 Nov, 3:30 PM"}
SLOT2 = {"start": "2026-11-27T09:00:00-05:00", "end": "2026-11-27T09:30:00-05:00", "label": "Fri 27 Nov, 9:00 AM"}


@pytest.fixture(scope="module")
def eng() -> TemplateEngine:
    return TemplateEngine(NY, "en-US")


def render(eng: TemplateEngine, source: str, **ctx: Any) -> str:
    return eng.compile(source).render(ctx)


# ------------------------------------------------------------------ rendering

@pytest.mark.parametrize(
    ("source", "ctx", "expected"),
    [
        ("Hi {{ clinic }}!", {"clinic": "Bright Smile"}, "Hi Bright Smile!"),
        ("plain text, no markers", {}, "plain text, no markers"),
        ("{{ n }} left", {"n": 3}, "3 left"),
        ("[{{ nothing }}]", {"nothing": None}, "[]"),  # None prints as nothing
        ("{{ slot }}", {"slot": SLOT}, "Thu 26 Nov, 3:30 PM"),  # a mapping prints as its label
        ("{{ booking.label }}", {"booking": {"label": "Fri 9 AM"}}, "Fri 9 AM"),
        ("{% if contact.known %}Welcome back{% else %}Hello{% endif %}", {"contact": {"known": True}}, "Welcome back"),
        ("{% for s in slots %}{{ loop.index }}) {{ s }} {% endfor %}", {"slots": [SLOT, SLOT2]},
         "1) Thu 26 Nov, 3:30 PM 2) Fri 27 Nov, 9:00 AM "),
        ("{{ name | default('there') }}", {}, "there"),
        ("{{ 'x' * 3 }}", {}, "xxx"),
        ("{{ '%s and %s' | format('a', 'b') }}", {}, "a and b"),
        ("{{ 2 ** 10 }}", {}, "1024"),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", {}, "012"),
        ("line\n", {}, "line\n"),
    ],
)
def test_render(eng: TemplateEngine, source: str, ctx: dict[str, Any], expected: str) -> None:
    assert eng.compile(source).render(ctx) == expected


def test_constant_template_is_not_compiled(eng: TemplateEngine) -> None:
    t = eng.compile("Thanks for calling.")
    assert t.constant and t.render({}) == "Thanks for calling."
    assert not eng.compile("Hi {{ x }}").constant


def test_an_unset_variable_renders_empty_and_logs_a_warning(
    eng: TemplateEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="orchestrator.flow.templates"):
        out = render(eng, "Booked for {{ bookng.start }}{{ when | time }}.", booking={"start": "x"})
    assert out == "Booked for ."
    assert any("'bookng' is undefined" in r.getMessage() for r in caplog.records)
    assert any("'when' is undefined" in r.getMessage() for r in caplog.records)


def test_an_unsafe_attribute_is_still_refused_not_blanked(eng: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="not allowed") as info:
        render(eng, "{{ x.__class__ }}", x="text")
    assert isinstance(info.value, OrchestratorError) and "fix:" in str(info.value)


def test_render_type_error_is_wrapped(eng: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match=r"TypeError"):
        render(eng, "{{ a + b }}", a=1, b="x")


def test_syntax_error_at_compile_is_a_template_error_with_line(eng: TemplateEngine) -> None:
    with pytest.raises(TemplateError) as info:
        eng.compile("ok\n{% if x %}unclosed")
    assert info.value.lineno == 2
    assert "unclosed" in info.value.source


# ------------------------------------------------------------------ connector args / expressions

def test_compile_value_single_expression_keeps_native_value(eng: TemplateEngine) -> None:
    ctx = {"slot": SLOT, "slots": [SLOT, SLOT2], "n": 3}
    assert eng.compile_value("{{ slot }}").render(ctx) == SLOT
    assert eng.compile_value("  {{ slots }} ").render(ctx) == [SLOT, SLOT2]
    assert eng.compile_value("{{ n }}").render(ctx) == 3
    assert eng.compile_value("{{ slot.start }}").render(ctx) == SLOT["start"]
    assert eng.compile_value("{{ n }} items").render(ctx) == "3 items"
    assert eng.compile_value("{{ n }}{{ n }}").render(ctx) == "33"  # two expressions: a string
    assert eng.compile_value(30).render(ctx) == 30


def test_compile_args_recursive(eng: TemplateEngine) -> None:
    args = eng.compile_args(
        {
            "slot": "{{ slot }}",
            "title": "{{ reason }} - {{ patient_name }}",
            "duration": "30m",
            "count": 3,
            "attendees": ["{{ phone }}", "desk"],
            "meta": {"who": "{{ patient_name }}", "fixed": True},
        }
    )
    assert isinstance(args, CompiledArgs)
    ctx = {"slot": SLOT, "reason": "Cleaning", "patient_name": "Alex", "phone": "+15555550199"}
    out = args.render(ctx)
    assert out == {
        "slot": SLOT,
        "title": "Cleaning - Alex",
        "duration": "30m",
        "count": 3,
        "attendees": ["+15555550199", "desk"],
        "meta": {"who": "Alex", "fixed": True},
    }
    out["meta"]["who"] = "changed"  # each render is a fresh structure
    assert args.render(ctx)["meta"]["who"] == "Alex"


def test_compile_args_missing_variable_is_none(eng: TemplateEngine) -> None:
    args = eng.compile_args({"slot": "{{ slot }}", "title": "Visit - {{ name }}"})
    assert args.render({}) == {"slot": None, "title": "Visit - "}


@pytest.mark.parametrize(
    ("expr", "ctx", "expected"),
    [
        ("contact.known", {"contact": {"known": True}}, True),
        ("contact.known", {"contact": {"known": False}}, False),
        ("slots | length > 2", {"slots": [1, 2]}, False),
        ("{{ retries >= 2 }}", {"retries": 2}, True),  # braces tolerated
        ("channel == 'voice' and not contact.known", {"channel": "voice", "contact": {"known": False}}, True),
        ("wanted is defined", {}, False),
        ("'cleaning' in reason | lower", {"reason": "Cleaning and checkup"}, True),
    ],
)
def test_expression(eng: TemplateEngine, expr: str, ctx: dict[str, Any], expected: Any) -> None:
    assert eng.compile_expression(expr).evaluate(ctx) == expected


def test_expression_undefined_is_none_and_false_in_comparisons(eng: TemplateEngine) -> None:
    assert eng.compile_expression("contact").evaluate({}) is None
    assert eng.compile_expression("contact.known").evaluate({}) is None
    assert eng.compile_expression("answer == 'yes'").evaluate({}) is False
    with pytest.raises(TemplateError):
        eng.compile_expression("x >").evaluate({})


# ------------------------------------------------------------------ static analysis

def test_template_variables() -> None:
    assert template_variables("Hi {{ a }} {{ b.c }} {% for s in slots %}{{ s }}{% endfor %}") == {"a", "b", "slots"}
    assert template_variables("{% set x = 1 %}{{ x }}{% for i in range(2) %}{{ i }}{% endfor %}") == set()
    assert expression_variables("contact.known and retries > 1") == {"contact", "retries"}
    assert expression_variables("{{ wanted }}") == {"wanted"}


def test_template_variables_syntax_error_has_line() -> None:
    with pytest.raises(jinja2.TemplateSyntaxError) as info:
        template_variables("line one\nline two {{ oops ")
    assert info.value.lineno == 2
    with pytest.raises(jinja2.TemplateSyntaxError):
        expression_variables("a b c")


# ------------------------------------------------------------------ filters

@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("{{ v | time }}", SLOT, "3:30 PM"),
        ("{{ v | date }}", SLOT, "Thursday, November 26"),
        ("{{ v | datetime }}", SLOT, "Thu 26 Nov, 3:30 PM"),
        ("{{ v | time }}", "2026-11-26T20:30:00Z", "3:30 PM"),  # UTC -> New York
        ("{{ v | time }}", "2026-11-26T10:00:00", "10:00 AM"),  # naive = flow timezone
        ("{{ v | time }}", "2026-11-27T00:05:00-05:00", "12:05 AM"),
        ("{{ v | time }}", "12:00", "12:00 PM"),
        ("{{ v | time }}", "09:15", "9:15 AM"),
        ("{{ v | date }}", "2026-12-03", "Thursday, December 3"),
        ("{{ v | date }}", "2026-11-27T03:00:00+00:00", "Thursday, November 26"),  # still the 26th in NY
        ("{{ v | time }}", dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.UTC), "10:00 AM"),
        ("{{ v | date }}", dt.date(2026, 1, 1), "Thursday, January 1"),
        # DST: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
        ("{{ v | time }}", "2026-03-08T06:30:00Z", "1:30 AM"),
        ("{{ v | time }}", "2026-03-08T07:30:00Z", "3:30 AM"),
        ("{{ v | time }}", "2026-11-01T05:30:00Z", "1:30 AM"),
        ("{{ v | time }}", "2026-11-01T06:30:00Z", "1:30 AM"),
        ("{{ v | time }}", "2026-11-01T07:30:00Z", "2:30 AM"),
        ("{{ v | join(', ') }}", [SLOT, SLOT2], "Thu 26 Nov, 3:30 PM, Fri 27 Nov, 9:00 AM"),
        ("{{ v | join(', ', last=' or ') }}", [SLOT, SLOT2, {"label": "Mon"}],
         "Thu 26 Nov, 3:30 PM, Fri 27 Nov, 9:00 AM or Mon"),
        ("{{ v | join(', ') }}", ["a", "b", 3], "a, b, 3"),
        ("{{ v | join(', ', attribute='start') }}", [SLOT], SLOT["start"]),
        ("{{ v | phone }}", "+15555550199", "(555) 555-0199"),
        ("{{ v | phone }}", "+442071838750", "+44 20 7183 8750"),  # foreign: international
        ("{{ v | phone('e164') }}", "(555) 555-0199", "+15555550199"),
        ("{{ v | phone }}", "not a number", "not a number"),
        ("{{ v | label }}", {"id": "book", "label": "Book a visit"}, "Book a visit"),
        ("{{ v | label }}", {"id": "book"}, "book"),
        ("{{ v | label }}", "plain", "plain"),
    ],
)
def test_filters(eng: TemplateEngine, source: str, value: Any, expected: str) -> None:
    assert eng.compile(source).render({"v": value}) == expected


def test_filters_follow_flow_timezone_and_language() -> None:
    kolkata = TemplateEngine("Asia/Kolkata", "en-IN")
    assert kolkata.compile("{{ v | time }}").render({"v": SLOT}) == "2:00 AM"  # 20:30Z -> 02:00 IST (+5:30)
    assert kolkata.compile("{{ v | date }}").render({"v": SLOT}) == "Friday 27 November"
    london = TemplateEngine("Europe/London", "en-GB")
    assert london.compile("{{ v | time }}").render({"v": SLOT}) == "20:30"
    assert london.compile("{{ v | datetime }}").render({"v": SLOT}) == "Thu 26 Nov, 20:30"
    assert london.compile("{{ v | phone }}").render({"v": "+442071838750"}) == "020 7183 8750"


def test_date_filter_rejects_non_dates(eng: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="cannot read 'banana'"):
        render(eng, "{{ v | date }}", v="banana")
    with pytest.raises(TemplateError, match="needs a date/time"):
        render(eng, "{{ v | time }}", v={"label": "no start"})


def test_unknown_timezone_is_a_config_error() -> None:
    with pytest.raises(OrchestratorError, match="Mars/Olympus"):
        TemplateEngine("Mars/Olympus")


# ------------------------------------------------------------------ the sandbox

INJECTIONS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ x.__class__ }}",
    "{{ x.__dict__ }}",
    "{{ x._private }}",
    "{{ (x|attr('__class__')) }}",
    "{{ x | attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ ''['__class__'] }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ [].append(1) }}",
    "{% set l = [1] %}{{ l.append(2) }}",
    "{{ d.update({'a': 1}) }}",
    "{{ d.pop('k') }}",
    "{% import 'os' as os %}{{ os }}",
    "{% from 'os' import system %}",
    "{% include '/etc/passwd' %}",
    "{% extends 'base.html' %}",
    "{{ range(10**9) | list }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ [0] * 10**9 }}",
    "{{ 2 ** 10000000 }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%*s' % (999999999, 'x') }}",
    "{{ '%.999999999f' % 1 }}",
    "{{ '%999999999s' | format('x') }}",
    "{{ 'x'.center(999999999) }}",
    "{{ 'x'.ljust(999999999) }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ 'x' | center(999999999) }}",
    "{{ 'x' | indent(999999999) }}",
    "{{ ''.format_map }}",
    "{{ x.__init__ }}",
    "{{ x.mro() }}",
]


class Thing:
    _private = "secret"

    def __init__(self) -> None:
        self.visible = "ok"


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_are_refused(eng: TemplateEngine, payload: str) -> None:
    ctx = {"x": Thing(), "d": {"k": 1}}
    with pytest.raises(TemplateError) as info:
        eng.compile(payload).render(ctx)
    message = str(info.value)
    assert "Traceback" not in message and "secret" not in message
    assert ctx["d"] == {"k": 1}  # nothing mutated


@pytest.mark.parametrize("payload", ["{{ config }}", "{{ request.application.__globals__ }}",
                                     "{{ range.__self__ }}"])
def test_unknown_names_render_nothing(eng: TemplateEngine, payload: str) -> None:
    assert eng.compile(payload).render({"x": Thing()}) == ""


def test_contact_input_is_never_evaluated(eng: TemplateEngine) -> None:
    hostile = "{{ ''.__class__.__mro__ }} {% for i in range(9) %}x{% endfor %}"
    assert eng.compile("You said: {{ last_input }}").render({"last_input": hostile}) == f"You said: {hostile}"


def test_large_output_is_refused(eng: TemplateEngine) -> None:
    # Every single operation is within bounds, but the whole render is too long.
    source = "{% for i in range(1000) %}{{ 'x' * 1000 }}{% endfor %}"
    with pytest.raises(TemplateError, match="rendered more than 200,000 characters"):
        eng.compile(source).render({})


LABEL_FLOW = """
flow: salon
start: reason
states:
  reason:
    ask: "What can we do for you?"
    choices:
      cleaning: {label: Teeth cleaning}
      whitening: {label: Whitening}
    save: reason
    next: extra
  extra:
    ask: "Anything else?"
    choices:
      cleaning: {label: Cleaning of your retainer}
      nothing: {}
    save: extra
    next: done
  done:
    end: completed
    say: "Booked: {{ reason | label }}, then {{ extra | label }}; {{ other | label }}; {{ 'cleaning' | label }}."
"""


def test_label_gives_a_static_choice_label_for_its_saved_id() -> None:
    from orchestrator.engine.compiler import compile_flow
    from orchestrator.flow.loader import load_flow_text

    compiled = compile_flow(load_flow_text(LABEL_FLOW, "salon.yaml"))
    say = compiled.states["done"].text.get("sms")
    assert say is not None
    out = say.render({"reason": "cleaning", "extra": "cleaning", "other": "nothing"})
    # each variable reads the labels of the ask that saved it; anything else the first ask's;
    # an id no choice has is printed as it is
    assert out == "Booked: Teeth cleaning, then Cleaning of your retainer; nothing; Teeth cleaning."
    assert say.render({"reason": "perm", "extra": "nothing", "other": "x"}).startswith("Booked: perm, then nothing")
    branch = compiled.templates.compile_expression("reason | label == 'Teeth cleaning'")
    assert branch.evaluate({"reason": "cleaning"}) is True
    slot = compiled.templates.compile("{{ s | label }}")
    assert slot.render({"s": {"id": "x", "label": "Thu 10 AM"}}) == "Thu 10 AM"
