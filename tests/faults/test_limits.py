"""Hostile flows and heavy admin work (issue #12): owner-supplied regular expressions, YAML
bombs, huge flows and runaway templates are bounded in time and memory, refused with
`file:line:col` and a hint, and never stall the worker that answers webhooks.

Rows "ReDoS", "YAML bomb", "deep YAML", "huge flow", "admin work on the loop" and "runaway
template" of the reliability matrix in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import time

import pytest
from flowkit import FIXED_NOW, load_test_flow

from orchestrator import patterns
from orchestrator.compiler import compile_flow
from orchestrator.connectors import ConnectorRegistry
from orchestrator.engine import Engine
from orchestrator.errors import FlowError
from orchestrator.model import Event
from orchestrator.validate import validate

CONTACT = "+15555550123"


def zip_flow(pattern: str) -> str:
    return f"""\
flow: hostile
start: zip
states:
  zip:
    ask: "Your code?"
    pattern: '{pattern}'
    save: code
    max_retries: 5
    next: done
    on: {{fail: done}}
  done: {{say: "Thanks {{{{ code }}}}", end: done}}
"""


async def answer(source: str, text: str) -> tuple[str, float]:
    engine = Engine(compile_flow(load_test_flow(source, "hostile.yaml")), ConnectorRegistry())  # type: ignore[arg-type]
    session = engine.new_session(f"biz:{CONTACT}", business="biz", contact=CONTACT, channel="sms", now=FIXED_NOW)
    session = (await engine.turn(session, Event(kind="start", channel="sms"), FIXED_NOW)).session
    started = time.perf_counter()
    result = await engine.turn(session, Event(kind="text", channel="sms", text=text), FIXED_NOW + 5)
    return result.session.state, time.perf_counter() - started


# ---------------------------------------------------------------- ReDoS


async def test_redos_catastrophic_pattern_answers_in_linear_time() -> None:
    # `(a+)+$` against 27 a's and a b backtracks 2**27 times on Python's `re` (seconds);
    # on RE2 it is one pass over the text.
    state, took = await answer(zip_flow("(a+)+$"), "a" * 27 + "b")
    assert state == "zip" and took < 0.5, f"the turn took {took:.2f}s"
    state, took = await answer(zip_flow("(a+)+$"), "a" * 100_000 + "b")
    assert state == "zip" and took < 0.5, f"the turn took {took:.2f}s"
    state, _ = await answer(zip_flow("(a+)+$"), "aaaa")
    assert state == "done"


@pytest.mark.parametrize(("pattern", "fragment", "hint"), [
    (r"(\w)\1", "backreference", "(aa|bb)"),
    ("(?P<d>[0-9])(?P=d)", "backreference", "write the repeated part out"),
    ("[0-9]+(?=x)", "lookahead", "match the text itself"),
    ("(?<!x)[0-9]+", "lookbehind", "match the text before"),
    ("(?>a+)b", "atomic group", "'a+' already behaves like 'a++'"),
    ("a{5000}", "more than 1000 times", "smaller count"),
    ("(unclosed", "is not a regular expression", "e.g. '^[0-9]{5}$'"),
])
def test_redos_pattern_re2_cannot_run_is_refused_at_validate(pattern: str, fragment: str, hint: str) -> None:
    found = validate(load_test_flow(zip_flow(pattern), "hostile.yaml"))  # type: ignore[arg-type]
    errors = [d for d in found if d.severity == "error" and "pattern" in d.message]
    assert len(errors) == 1, [d.format() for d in found]
    d = errors[0]
    assert (d.file, d.line, d.col) == ("hostile.yaml", 6, 14), d.format()
    assert fragment in d.message and d.hint and hint in d.hint, d.format()
    with pytest.raises(FlowError):  # and the compiler (a flows-dir file, an upload) refuses it too
        compile_flow(load_test_flow(zip_flow(pattern), "hostile.yaml"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    (r"^\w+$", "José", True),  # Unicode letters, as Python's `re` reads \w
    (r"\d{3}", "١٢٣", True),  # Unicode digits
    (r"\s", "\u00a0", True),
    (r"\W", "é", False),
    (r"[\w.-]+@[\w-]+\.[a-z]+", "zoë.o-b@ex-ample.com", True),
    (r"[]a]+", "]a]", True),
    (r"[^]a]+", "bc", True),
    (r"[[:digit:]]+", "42", False),  # no POSIX classes in Python: a set of [:digt then "]+"
    (r"[[:digit:]]+", "d]]", True),
    (r"abc\Z", "abc", True),
    (r"(?i)^yes$", "YES", True),
    ("^[0-9]{5}$", "1234", False),
])
def test_redos_pattern_keeps_python_re_semantics(pattern: str, text: str, matches: bool) -> None:
    import re
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (re.fullmatch(pattern, text) is not None) is matches
    assert patterns.fullmatch(pattern, text) is matches


def test_redos_says_re_in_flow_tests_runs_on_re2() -> None:
    assert patterns.search("^b.*$", "a\nB" + "a" * 50_000, ignore_case=True, multiline=True)
    problem = patterns.problem(r"(a)\1")
    assert problem is not None and "backreference" in problem.message
