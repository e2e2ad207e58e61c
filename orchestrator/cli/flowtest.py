"""`orchestrator test FILE...`: conversation tests for flows, written in YAML.

    flow: dental_booking.yaml           # relative to the test file
    channel: sms                        # sms | voice | whatsapp (a test may override it)
    now: 2026-11-25T12:00               # the clock (no offset: the flow's timezone); 5 s per turn
    contact: "+15555550123"
    vars: {}                            # extra flow variables for every test
    tests:
      - name: books a cleaning
        now: 2026-11-26T09:00           # a test may set its own clock (and channel, contact, vars)
        turns:
          - expect: {says: "Thanks for contacting", state: menu}
          - user: book                  # HELP, STOP, START are the carrier keywords on sms/whatsapp
          - expect: {says: "What's your name", state: ask_name}
          - event: timeout              # empty, hangup, no_answer, busy, answered, undelivered

The bot speaks first. An `expect` checks what came back since the previous `user:` or
`event:` turn, as the server would deliver it: the contact's lines as that channel shows
them (numbered menus on SMS, buttons on WhatsApp) and the staff messages
(notify.staff_messages). Keys: `says` (a case-insensitive substring, or a list of them),
`says_re` (a regular expression, case-insensitive, `^`/`$` at line ends), `not_says`,
`not_says_re`, `notifies` (a substring of a staff message, a list, or `false` for none),
`sends` (a substring of what a `message.send` queued, shown as "sms: <text>", a list, or `false`),
`state`, `vars` (a subset; values compared as text when the expectation is text),
`outcome`, `ended`, `booking: true|false`, `opted_out: true|false`.

Every key of a test file is checked before anything runs: an unknown one (top level, a
test, a turn, an expect) is an error at its file:line:col naming the allowed keys. The
flow gets the verdict of `validate` (errors refuse it; warnings go to stderr). The calendar
and the CRM are the embedded ones, on temporary SQLite files per test. A failure prints `file:line:col`
of the expectation and a unified diff of the expected vs the actual lines; the exit status
is 1 when any test fails.
"""

from __future__ import annotations

import asyncio
import difflib
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

import yaml

from orchestrator.cli.chat import CALENDAR_DB_ENV, CAPABILITIES, Conversation, Reply, local_timestamp
from orchestrator.engine.compiler import compile_flow
from orchestrator.errors import FlowError, OrchestratorError
from orchestrator.flow import patterns
from orchestrator.flow.loader import did_you_mean
from orchestrator.model import Event, Session
from orchestrator.plugins.connectors import ConnectorRegistry

TOP_KEYS = ("flow", "channel", "now", "contact", "vars", "tests")
TEST_KEYS = ("name", "channel", "now", "contact", "vars", "turns")
TURN_KEYS = ("user", "expect", "event")
EXPECT_KEYS = ("says", "says_re", "not_says", "not_says_re", "notifies", "sends", "state", "vars", "outcome", "ended",
               "booking", "opted_out")
# event name -> what the provider sends: a dial status for a transfer's end, else the kind itself
EVENTS: dict[str, Event] = {
    "timeout": Event(kind="timeout"), "empty": Event(kind="empty"), "hangup": Event(kind="hangup"),
    "no_answer": Event(kind="dial", text="no-answer"), "busy": Event(kind="dial", text="busy"),
    "answered": Event(kind="dial", text="completed"), "undelivered": Event(kind="undelivered", text=""),
}
POS = "__pos__"
KEYS = "__keys__"
_META = (POS, KEYS)


class FlowTestError(OrchestratorError, ValueError):
    """A malformed test file; the message names file:line:col and the fix."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that records each mapping's position under `__pos__` and each key's under
    `__keys__` (line, col; 1-based)."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    data = yaml.SafeLoader.construct_mapping(loader, node, deep=True)
    data[POS] = (node.start_mark.line + 1, node.start_mark.column + 1)
    data[KEYS] = {getattr(k, "value", None): (k.start_mark.line + 1, k.start_mark.column + 1) for k, _ in node.value}
    return data


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in _META}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _keys(item: Mapping[str, Any]) -> list[str]:
    return [k for k in item if k not in _META]


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


def _where(path: Path, item: Any, key: str | None = None) -> str:
    if not isinstance(item, Mapping):
        return f"{path}:1:1"
    line, col = (item.get(KEYS, {}).get(key) if key else None) or item.get(POS, (1, 1))
    return f"{path}:{line}:{col}"


def _contains(needle: str, lines: list[str]) -> bool:
    return needle.casefold() in "\n".join(lines).casefold()


def _search(pattern: str, lines: list[str]) -> bool:
    return patterns.search(pattern, "\n".join(lines), ignore_case=True, multiline=True)


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


# ---------------------------------------------------------------------------- the file's shape


def _check_keys(path: Path, item: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> Iterator[str]:
    for key in _keys(item):
        if key not in allowed:
            hint = did_you_mean(str(key), allowed)
            yield (f"{_where(path, item, key)}: unknown key {key!r} in {what}" + (f" ({hint})" if hint else "")
                   + f"; allowed: {', '.join(allowed)}")


def _check_now(path: Path, item: Mapping[str, Any]) -> Iterator[str]:
    if "now" in item and not isinstance(item["now"], datetime | date):
        try:
            datetime.fromisoformat(str(item["now"]))
        except ValueError:
            yield (f"{_where(path, item, 'now')}: now: {item['now']!r} is not an ISO date-time (write "
                   "2026-11-25T12:00 for the flow's timezone, or 2026-11-25T12:00-05:00)")


def _check_channel(path: Path, item: Mapping[str, Any]) -> Iterator[str]:
    if "channel" in item and item["channel"] not in CAPABILITIES:
        yield f"{_where(path, item, 'channel')}: channel {item['channel']!r}: use {', '.join(CAPABILITIES)}"


def _check_expect(path: Path, turn: Mapping[str, Any]) -> Iterator[str]:
    expect = turn["expect"]
    if not isinstance(expect, dict):
        yield f"{_where(path, turn, 'expect')}: `expect:` takes a mapping, e.g. {{says: Hello, state: menu}}"
        return
    yield from _check_keys(path, expect, EXPECT_KEYS, "an expect")
    for key in ("says_re", "not_says_re"):
        for pattern in _as_list(expect[key]) if key in expect else []:
            if (bad := patterns.problem(pattern)) is not None:
                yield f"{_where(path, expect, key)}: {key}: {pattern!r} {bad.message} (hint: {bad.hint})"


def _check_turn(path: Path, turn: Any, test: Mapping[str, Any]) -> Iterator[str]:
    if not isinstance(turn, dict) or len(_keys(turn)) != 1:
        yield (f"{_where(path, turn if isinstance(turn, dict) else test)}: a turn is one of `user: text`, "
               "`expect: {...}` or `event: timeout`")
        if not isinstance(turn, dict):
            return
    yield from _check_keys(path, turn, TURN_KEYS, "a turn")
    if "event" in turn and turn["event"] not in EVENTS:
        hint = did_you_mean(str(turn["event"]), EVENTS)
        yield (f"{_where(path, turn, 'event')}: event {turn['event']!r}" + (f" ({hint})" if hint else "")
               + f"; use {', '.join(EVENTS)}")
    if "expect" in turn:
        yield from _check_expect(path, turn)


def check_file(path: Path, doc: Mapping[str, Any]) -> list[str]:
    """Every problem of a test file's shape, each at its file:line:col."""
    problems = [*_check_keys(path, doc, TOP_KEYS, "the test file"), *_check_now(path, doc),
                *_check_channel(path, doc)]
    for index, test in enumerate(doc["tests"]):
        if not isinstance(test, dict):
            problems.append(f"{path}: test #{index + 1} must be a mapping with `name:` and `turns:`")
            continue
        problems += [*_check_keys(path, test, TEST_KEYS, "a test"), *_check_now(path, test),
                     *_check_channel(path, test)]
        turns = test.get("turns") or []
        if not isinstance(turns, list):
            problems.append(f"{_where(path, test, 'turns')}: `turns:` takes a list of turns")
            continue
        for turn in turns:
            problems += _check_turn(path, turn, test)
    return problems


# ---------------------------------------------------------------------------- running


def _start(now: Any, timezone: tzinfo) -> float:
    if now is None:
        return datetime.now().timestamp()
    if isinstance(now, datetime):
        return local_timestamp(now, timezone)
    if isinstance(now, date):
        return local_timestamp(datetime(now.year, now.month, now.day), timezone)
    return local_timestamp(datetime.fromisoformat(str(now)), timezone)


class _Runner:
    def __init__(self, path: Path, doc: dict[str, Any], tmp: Path) -> None:
        from orchestrator.flow.validate import load_checked

        self.path = path
        self.doc = doc
        flow_ref = doc.get("flow")
        if not isinstance(flow_ref, str):
            raise FlowTestError(f"{_where(path, doc)}: `flow:` (the flow file, relative to this file) is missing")
        self.flow_path = (path.parent / flow_ref).resolve()
        if not self.flow_path.is_file():
            raise FlowTestError(f"{_where(path, doc, 'flow')}: flow file {flow_ref!r} not found next to {path.name}")
        self.channel = str(doc.get("channel", "sms"))
        self.contact = str(doc.get("contact", "+15555550123"))
        self.vars = _plain(doc.get("vars") or {})
        self.loaded = load_checked(self.flow_path, self._connectors(tmp / "check" / "calendar.sqlite3"))
        for warning in self.loaded.warnings:
            sys.stderr.write(warning.format() + "\n")

    @staticmethod
    def _connectors(calendar: Path) -> ConnectorRegistry:
        # the embedded calendar (no Google keys given) on its own file, the embedded CRM next to it
        connectors = ConnectorRegistry()
        connectors.load_entry_points(env={CALENDAR_DB_ENV: str(calendar)})
        return connectors

    async def run_test(self, test: dict[str, Any], tmp: Path, index: int) -> Outcome:
        name = str(test.get("name") or f"test {index + 1}")
        connectors = self._connectors(tmp / f"test-{index}" / "calendar.sqlite3")
        compiled = compile_flow(self.loaded, connectors=connectors)
        talk = Conversation(
            compiled, connectors, channel=str(test.get("channel", self.channel)),
            contact=str(test.get("contact", self.contact)),
            now=_start(test.get("now", self.doc.get("now")), compiled.timezone),
            vars={**self.vars, **_plain(test.get("vars") or {})},
        )
        reply = await talk.start()
        summary = talk.last_summary
        failures: list[Failure] = []
        for turn in test.get("turns") or []:
            if "expect" in turn:
                failures += self._expect(turn["expect"], reply, talk, summary)
                continue
            if "user" in turn:
                reply = await talk.type(str(turn["user"]))
            else:
                template = EVENTS[str(turn["event"])]
                reply = await talk.send(Event(kind=template.kind, channel=talk.channel, text=template.text))
            summary = talk.last_summary or summary
        return Outcome(name, failures)

    def _expect(self, expect: dict[str, Any], reply: Reply, talk: Conversation, summary: dict[str, Any] | None,
                ) -> list[Failure]:
        where = _where(self.path, expect)
        session, lines = talk.session, reply.lines
        staff = [m.text for m in reply.staff]
        out: list[Failure] = []
        for key, found in (("says", _contains), ("says_re", _search)):
            for pattern in _as_list(expect[key]) if key in expect else []:
                if not found(pattern, lines):
                    hint = " (it matches as a regular expression: use says_re)" if key == "says" and \
                        _regex_hit(pattern, lines) else ""
                    diff = list(difflib.unified_diff([pattern], lines, f"expected ({key})", "actual bot lines",
                                                     lineterm=""))
                    out.append(Failure(where, f'the bot did not say "{pattern}"{hint}', diff))
        for key, found in (("not_says", _contains), ("not_says_re", _search)):
            for pattern in _as_list(expect[key]) if key in expect else []:
                if found(pattern, lines):
                    hits = [line for line in lines if found(pattern, [line])] or lines
                    diff = list(difflib.unified_diff(hits, [], "actual bot lines", f"expected ({key})", lineterm=""))
                    out.append(Failure(where, f'the bot said "{pattern}", which it must not', diff))
        if "notifies" in expect:
            out += self._notifies(where, expect["notifies"], staff, talk)
        if "sends" in expect:
            out += self._sends(where, expect["sends"], reply.sent)
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
        if "opted_out" in expect and talk.opted_out != bool(expect["opted_out"]):
            out.append(Failure(where, f"the contact is {'' if talk.opted_out else 'not '}opted out"))
        for key, value in _plain(expect.get("vars") or {}).items():
            if key not in session.vars:
                out.append(Failure(where, f"variable {key!r} is not set (set: {', '.join(sorted(session.vars))})"))
            elif not _same(value, session.vars[key]):
                out.append(Failure(where, f"variable {key!r} is {session.vars[key]!r}, expected {value!r}"))
        return out

    @staticmethod
    def _notifies(where: str, expected: Any, staff: list[str], talk: Conversation) -> list[Failure]:
        if expected is False or expected == []:
            return [Failure(where, "staff were told, which they must not be", [f"  staff> {t}" for t in staff])] \
                if staff else []
        if not staff:
            why = "" if talk.compiled.settings.staff_notify else " (the flow sets no settings.staff_notify)"
            return [Failure(where, f"staff were not told{why}")]
        return [Failure(where, f'no staff message says "{pattern}"',
                        list(difflib.unified_diff([pattern], staff, "expected (notifies)", "actual staff messages",
                                                  lineterm="")))
                for pattern in _as_list(expected) if not _contains(pattern, staff)]


    @staticmethod
    def _sends(where: str, expected: Any, sent: list[str]) -> list[Failure]:
        if expected is False or expected == []:
            return [Failure(where, "a message was sent, which must not be", [f"  sent> {t}" for t in sent])] \
                if sent else []
        if not sent:
            return [Failure(where, "no message was sent (message.send)")]
        return [Failure(where, f'no sent message says "{pattern}"',
                        list(difflib.unified_diff([pattern], sent, "expected (sends)", "actual sent messages",
                                                  lineterm="")))
                for pattern in _as_list(expected) if not _contains(pattern, sent)]


def _regex_hit(pattern: str, lines: list[str]) -> bool:
    try:
        return _search(pattern, lines)
    except ValueError:  # refused at check time (`patterns.problem`)
        return False


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
    problems = check_file(path, doc)
    if problems:
        raise FlowTestError("\n".join(problems))
    return doc


async def run_file(path: Path, out: TextIO) -> tuple[int, int]:
    """Run one test file, printing results; returns (passed, failed)."""
    doc = load_tests(path)
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="orchestrator-test-") as tmp:
        runner = _Runner(path, doc, Path(tmp))
        for index, test in enumerate(doc["tests"]):
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
