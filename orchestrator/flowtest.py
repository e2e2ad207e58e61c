"""`orchestrator test FILE...`: conversation tests for flows, written in YAML.

    flow: dental_booking.yaml           # relative to the test file
    channel: sms                        # sms | voice | whatsapp (a test may override it)
    now: 2026-11-25T12:00:00-05:00      # the fixed clock; it moves 5 s per turn
    contact: "+15555550123"
    vars: {}                            # extra flow variables for every test
    tests:
      - name: books a cleaning
        turns:
          - expect: {says: "Thanks for contacting", state: menu}
          - user: book
          - expect: {says: "What's your name", state: ask_name}
          - event: timeout              # or: empty, hangup (a voice silence / hang-up)

The bot speaks first. An `expect` checks the bot lines since the previous `user:` turn, as
the contact sees them on that channel (numbered menus on SMS, buttons on WhatsApp):
`says` (a substring, else a regular expression, or a list of them), `not_says`, `state`,
`vars` (a subset; values compared as text when the expectation is text), `outcome`,
`ended`, `booking: true|false`. The calendar is the embedded one on a temporary SQLite
file per test. A failure prints `file:line:col` of the expectation and a unified diff of
the expected vs the actual bot lines; the exit status is 1 when any test fails.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from .channels import Capabilities
from .chat import CALENDAR_DB_ENV, CAPABILITIES, SECONDS_PER_TURN, event_for, show
from .compiler import compile_flow
from .connectors import ConnectorRegistry
from .engine import Engine
from .errors import FlowError, OrchestratorError
from .model import Event, Outbound, Session
from .validate import check

BUSINESS = "+15555550100"
EXPECT_KEYS = frozenset({"says", "not_says", "state", "vars", "outcome", "ended", "booking"})
TURN_KEYS = frozenset({"user", "expect", "event"})
EVENTS = frozenset({"timeout", "empty", "hangup"})
POS = "__pos__"


class FlowTestError(OrchestratorError, ValueError):
    """A malformed test file; the message names file:line:col and the fix."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that records each mapping's position under `__pos__` (line, col; 1-based)."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    data = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    data[POS] = (node.start_mark.line + 1, node.start_mark.column + 1)
    return data


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != POS}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class Failure:
    where: str
    message: str
    diff: list[str] = field(default_factory=list)

    def format(self) -> str:
        return "\n".join([f"{self.where}: {self.message}", *self.diff])


@dataclass
class Outcome:
    name: str
    failures: list[Failure]


def _where(path: Path, item: Mapping[str, Any]) -> str:
    line, col = item.get(POS, (1, 1))
    return f"{path}:{line}:{col}"


def _matches(pattern: str, lines: list[str]) -> bool:
    text = "\n".join(lines)
    if pattern in text:
        return True
    try:
        return re.search(pattern, text, re.IGNORECASE | re.MULTILINE) is not None
    except re.error:
        return False


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and not isinstance(actual, str):
        return expected == ("" if actual is None else str(actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(k in actual and _same(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


def _booked(session: Session, summary: dict[str, Any] | None) -> bool:
    if summary and summary.get("booking"):
        return True
    return any(isinstance(v, dict) and {"id", "start"} <= set(v) for v in session.vars.values())


class _Runner:
    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        flow_ref = doc.get("flow")
        if not isinstance(flow_ref, str):
            raise FlowTestError(f"{_where(path, doc)}: `flow:` (the flow file, relative to this file) is missing")
        self.flow_path = (path.parent / flow_ref).resolve()
        if not self.flow_path.is_file():
            raise FlowTestError(f"{_where(path, doc)}: flow file {flow_ref!r} not found next to {path.name}")
        self.channel = str(doc.get("channel", "sms"))
        self.contact = str(doc.get("contact", "+15555550123"))
        self.vars = _plain(doc.get("vars") or {})
        now = doc.get("now")
        try:
            when = now if isinstance(now, datetime) else datetime.fromisoformat(str(now)) if now else None
        except ValueError:
            raise FlowTestError(f"{_where(path, doc)}: now: {now!r} is not an ISO date-time "
                                "(write 2026-11-25T12:00:00-05:00)") from None
        self.now = when.timestamp() if when else datetime.now().timestamp()
        from .loader import load_flow

        loaded = check(load_flow(self.flow_path))
        self.loaded = loaded

    async def run_test(self, test: dict[str, Any], tmp: Path, index: int) -> Outcome:
        name = str(test.get("name") or f"test {index + 1}")
        channel = str(test.get("channel", self.channel))
        if channel not in CAPABILITIES:
            return Outcome(name, [Failure(_where(self.path, test), f"channel {channel!r}: use sms, voice or whatsapp")])
        caps = CAPABILITIES[channel]
        connectors = ConnectorRegistry()  # the embedded calendar (no Google keys given) on a fresh file
        connectors.load_entry_points(env={CALENDAR_DB_ENV: str(tmp / f"calendar-{index}.sqlite3")})
        compiled = compile_flow(self.loaded, connectors=connectors)
        engine = Engine(compiled, connectors)
        vars_ = {**self.vars, **_plain(test.get("vars") or {})}
        contact = str(test.get("contact", self.contact))
        session = engine.new_session(f"{BUSINESS}:{contact}", business=BUSINESS, contact=contact, channel=channel,
                                     now=self.now, vars=vars_)
        now = self.now
        result = await engine.turn(session, Event(kind="start", channel=channel), now)
        session, summary = result.session, result.summary
        lines, ask = self._lines(result.messages, caps, None)
        failures: list[Failure] = []
        for turn in test.get("turns") or []:
            if not isinstance(turn, dict) or not (set(turn) - {POS}) <= TURN_KEYS or len(set(turn) - {POS}) != 1:
                failures.append(Failure(_where(self.path, turn if isinstance(turn, dict) else test),
                                        "a turn is one of `user: text`, `expect: {...}` or `event: timeout`"))
                break
            if "expect" in turn:
                failures += self._expect(turn["expect"], lines, session, summary)
                continue
            now += SECONDS_PER_TURN
            if "user" in turn:
                event = event_for(str(turn["user"]), channel, ask)
            else:
                kind = str(turn["event"])
                if kind not in EVENTS:
                    failures.append(Failure(_where(self.path, turn),
                                            f"event {kind!r}: use {', '.join(sorted(EVENTS))}"))
                    break
                event = Event(kind=kind, channel=channel)  # type: ignore[arg-type]
            result = await engine.turn(session, event, now)
            session = result.session
            summary = result.summary or summary
            if session.channel != channel and session.channel in CAPABILITIES:  # a call moved to text
                channel, caps = session.channel, CAPABILITIES[session.channel]
            lines, ask = self._lines(result.messages, caps, ask)
        return Outcome(name, failures)

    @staticmethod
    def _lines(messages: list[Outbound], caps: Capabilities, ask: Outbound | None) -> tuple[list[str], Outbound | None]:
        lines: list[str] = []
        for message in messages:
            if message.kind == "ask":
                ask = message
            lines += show(message, caps)
        return lines, ask

    def _expect(self, expect: Any, lines: list[str], session: Session, summary: dict[str, Any] | None,
                ) -> list[Failure]:
        if not isinstance(expect, dict):
            return [Failure(f"{self.path}", "`expect:` takes a mapping, e.g. {says: Hello, state: menu}")]
        where = _where(self.path, expect)
        unknown = set(expect) - EXPECT_KEYS - {POS}
        if unknown:
            return [Failure(where, f"unknown expectation {sorted(unknown)[0]!r}; use {', '.join(sorted(EXPECT_KEYS))}")]
        out: list[Failure] = []
        for pattern in _as_list(expect["says"]) if "says" in expect else []:
            if not _matches(pattern, lines):
                diff = list(difflib.unified_diff([pattern], lines, "expected (says)", "actual bot lines", lineterm=""))
                out.append(Failure(where, f'the bot did not say "{pattern}"', diff))
        for pattern in _as_list(expect["not_says"]) if "not_says" in expect else []:
            if _matches(pattern, lines):
                hits = [line for line in lines if _matches(pattern, [line])] or lines
                diff = list(difflib.unified_diff(hits, [], "actual bot lines", "expected (not_says)", lineterm=""))
                out.append(Failure(where, f'the bot said "{pattern}", which it must not', diff))
        if "state" in expect and session.state != str(expect["state"]):
            out.append(Failure(where, f"state is {session.state!r}, expected {expect['state']!r}",
                               [f"  path: {' -> '.join(session.path)}", *(f"  bot> {line}" for line in lines)]))
        if "outcome" in expect and session.outcome != expect["outcome"]:
            out.append(Failure(where, f"outcome is {session.outcome!r}, expected {expect['outcome']!r}"))
        if "ended" in expect and (session.status == "ended") != bool(expect["ended"]):
            out.append(Failure(where, f"conversation status is {session.status!r}, expected "
                                      f"{'ended' if expect['ended'] else 'active'}"))
        if "booking" in expect and _booked(session, summary) != bool(expect["booking"]):
            out.append(Failure(where, f"expected {'a' if expect['booking'] else 'no'} booking"))
        for key, value in _plain(expect.get("vars") or {}).items():
            if key not in session.vars:
                out.append(Failure(where, f"variable {key!r} is not set (set: {', '.join(sorted(session.vars))})"))
            elif not _same(value, session.vars[key]):
                out.append(Failure(where, f"variable {key!r} is {session.vars[key]!r}, expected {value!r}"))
        return out


def load_tests(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except OSError as exc:
        raise FlowTestError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise FlowTestError(f"{at}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
        raise FlowTestError(f"{path}:1:1: a test file needs `flow:` and a list of `tests:`")
    return doc


async def run_file(path: Path, out: TextIO) -> tuple[int, int]:
    """Run one test file, printing results; returns (passed, failed)."""
    doc = load_tests(path)
    runner = _Runner(path, doc)
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="orchestrator-test-") as tmp:
        for index, test in enumerate(doc["tests"]):
            if not isinstance(test, dict):
                raise FlowTestError(f"{path}: test #{index + 1} must be a mapping with `name:` and `turns:`")
            outcome = await runner.run_test(test, Path(tmp), index)
            if outcome.failures:
                failed += 1
                out.write(f"FAIL {path}: {outcome.name}\n")
                for failure in outcome.failures:
                    out.write(failure.format() + "\n")
            else:
                passed += 1
                out.write(f"ok   {path}: {outcome.name}\n")
    return passed, failed


def main(paths: list[str], out: TextIO | None = None) -> int:
    """`orchestrator test FILE...`: 0 when every test passes, 1 otherwise."""
    out = out or sys.stdout
    passed = failed = errors = 0
    for raw in paths:
        try:
            p, f = asyncio.run(run_file(Path(raw), out))
        except FlowError as exc:
            out.write(f"ERROR {raw}: the flow under test is invalid:\n{exc}\n")
            errors += 1
            continue
        except OrchestratorError as exc:
            out.write(f"ERROR {exc}\n")
            errors += 1
            continue
        passed, failed = passed + p, failed + f
    out.write(f"{passed} passed, {failed} failed" + (f", {errors} file error(s)" if errors else "") + "\n")
    return 1 if failed or errors else 0
