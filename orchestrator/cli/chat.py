"""`orchestrator chat FILE`: talk to a flow in the terminal, in one channel's idiom.

Self-contained: the engine, a fresh session and the connectors installed as entry points
(the embedded calendar keeps its bookings in `$ORCHESTRATOR_CALENDAR_DB`, else in a
temporary file dropped at exit). The bot speaks first, as on an incoming call or a
text-back; then every stdin line is one answer. Bot lines are printed as `bot> ...`,
rendered through `orchestrator.engine.render.present` with the channel's capabilities:

- sms: a numbered menu (`1) Book a visit`); type the number or the words
- whatsapp: `[Book a visit] [Opening hours]` buttons, or a list; type a title to tap it
- voice: "For Book a visit, press 1."; typed digits are keypad presses, an empty line is silence

The clock starts at `--now` (ISO, default: now; without an offset it is the wall-clock time
in the flow's `settings.timezone`) and moves 5 seconds per turn.

As the server does: the flow is refused when `validate` finds an error (exit 1, every error
at file:line:col; warnings go to stderr and the chat runs); on sms and whatsapp the carrier
keywords are answered before any turn (HELP: `settings.help_text`, else
ORCHESTRATOR_HELP_TEXT, else the default; STOP: the opt-out confirmation, and the chat ends;
START: opted back in); every staff message the server would send (notify.staff_messages:
handoffs, and the summary of each outcome staff are told about) is shown as
`(to staff <number>: ...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from orchestrator.engine.compiler import CompiledFlow, compile_flow
from orchestrator.engine.keywords import keyword_kind
from orchestrator.engine.render import present, words_of
from orchestrator.engine.turn import Engine
from orchestrator.errors import OrchestratorError
from orchestrator.flow import schema
from orchestrator.model import Event, Outbound
from orchestrator.plugins.channels import Capabilities
from orchestrator.plugins.connectors import ConnectorRegistry, default_connectors
from orchestrator.runtime.notify import NOTIFY_OUTCOMES, contact_messages, staff_messages

VOICE = Capabilities(idiom="voice", speech=True, dtmf=True)
SMS = Capabilities(idiom="sms", segment_budget=3, max_text_len=1600)
WHATSAPP = Capabilities(idiom="whatsapp", max_buttons=3, button_title_len=20, max_list_rows=10, row_title_len=24)
CAPABILITIES: dict[str, Capabilities] = {"voice": VOICE, "sms": SMS, "whatsapp": WHATSAPP}
CALENDAR_DB_ENV = "ORCHESTRATOR_CALENDAR_DB"
BUSINESS = "+15555550100"
SECONDS_PER_TURN = 5.0
SPEECH_CONFIDENCE = 0.92
HELP_TEXT_ENV = "ORCHESTRATOR_HELP_TEXT"


def show(message: Outbound, caps: Capabilities) -> list[str]:
    """The lines a contact would see (or hear) for one outbound message."""
    if message.kind == "end":
        return []
    if message.kind == "notify":
        return [f"(to staff {message.target}: {message.text})"]
    if message.kind == "handoff":
        note = f"(dialling {message.target})" if caps.speech else f"(handed to {message.target})"
        return [line for line in (message.text, note) if line]
    if message.kind == "record":
        how = "(recording after the beep: type your message)" if caps.speech else "(type your message)"
        return [f"{message.text} {how}"]
    if message.kind == "say":
        return [message.text + (f" [media: {message.media_url}]" if message.media_url else "")]
    shown = present(message, caps)
    if shown.mode == "buttons":
        return [shown.text, " ".join(f"[{c.label}]" for c in shown.choices)]
    if shown.mode == "list":
        rows = [f"  - {c.label}" + (f" ({c.description})" if c.description else "") for c in shown.choices]
        return [shown.text, f"[{words_of(message)['list_button']}]", *rows]
    return shown.text.split("\n")


def event_for(line: str, channel: str, ask: Outbound | None) -> Event:
    """One typed line -> the event that channel's provider would send."""
    text = line.strip()
    if channel == "voice":
        if not text:
            return Event(kind="empty", channel=channel)
        if text.replace("#", "").replace("*", "").isdigit():
            return Event(kind="digits", channel=channel, text=text)
        return Event(kind="speech", channel=channel, text=text, confidence=SPEECH_CONFIDENCE)
    if channel == "whatsapp" and ask is not None and ask.choices:
        shown = present(ask, WHATSAPP)
        for choice in shown.choices if shown.mode in ("buttons", "list") else []:
            if text.strip("[]").casefold() == choice.label.casefold():
                return Event(kind="choice", channel=channel, choice_id=choice.id, text=choice.label)
    return Event(kind="text", channel=channel, text=text)


@contextlib.contextmanager
def calendar_db() -> Iterator[str]:
    """The embedded calendar's file: $ORCHESTRATOR_CALENDAR_DB, else a temporary one."""
    configured = os.environ.get(CALENDAR_DB_ENV)
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="orchestrator-chat-") as tmp:
        yield str(Path(tmp) / "calendar.sqlite3")


def chat_connectors(calendar_path: str) -> ConnectorRegistry:
    """The installed connectors, with the embedded calendar opened on `calendar_path`
    (unless Google Calendar is configured in the environment)."""
    return default_connectors({**os.environ, "ORCHESTRATOR_CALENDAR_DB": calendar_path})


def parse_now(text: str | None, timezone: tzinfo) -> float:
    """`--now` (or a flow test's `now:`) -> epoch seconds. A time without an offset is the
    wall-clock time in the flow's `settings.timezone`; an offset given stays as given."""
    if not text:
        return time.time()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise OrchestratorError(f"--now {text!r}: write an ISO date-time, e.g. 2026-11-25T12:00 "
                                "(the flow's timezone) or 2026-11-25T12:00-05:00") from None
    return local_timestamp(when, timezone)


def local_timestamp(when: datetime, timezone: tzinfo) -> float:
    """A date-time -> epoch seconds; a naive one is read in `timezone` (the flow's)."""
    return (when if when.tzinfo is not None else when.replace(tzinfo=timezone)).timestamp()


def help_answer(compiled: CompiledFlow, env: Mapping[str, str]) -> str:
    """The HELP answer the server gives: the flow's settings.help_text, else
    ORCHESTRATOR_HELP_TEXT, else the runtime's default naming the business."""
    if compiled.settings.help_text:
        return schema.plain(compiled.settings.help_text)
    words = compiled.words
    own = env.get(HELP_TEXT_ENV) if words.language == "en" else None
    return own or words.say("help", business=compiled.title)


@dataclass
class Reply:
    """What one step of a conversation produced, as the server would deliver it."""

    lines: list[str] = field(default_factory=list)  # what the contact sees (or hears)
    staff: list[Outbound] = field(default_factory=list)  # what staff get (notify.staff_messages)
    sent: list[str] = field(default_factory=list)  # what `message.send` queued: "<channel>: <text>"
    reminders: list[str] = field(default_factory=list)  # reminders a booking scheduled: "<flow> at <local time>"
    untold: str | None = None  # an outcome staff act on, with no settings.staff_notify to tell
    ended: bool = False
    keyword: str | None = None  # opt_out | opt_in | help: a carrier keyword, answered before any turn


class Conversation:
    """One contact talking to a flow as the server runs it: carrier keywords (STOP, START,
    HELP) on SMS and WhatsApp before any turn, the engine's turns, a call moving to text
    after a hang-up, and the staff messages of each turn. `chat` and `test` both drive it."""

    def __init__(self, compiled: CompiledFlow, connectors: ConnectorRegistry, *, channel: str, contact: str,
                 now: float, vars: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> None:
        self.compiled = compiled
        self.engine = Engine(compiled, connectors)
        self.channel = channel
        self.caps = CAPABILITIES[channel]
        self.now = now
        self.env = env if env is not None else {}
        self.session = self.engine.new_session(f"{BUSINESS}:{contact}", business=BUSINESS, contact=contact,
                                               channel=channel, now=now, vars=vars)
        self.ask: Outbound | None = None
        self.opted_out = False
        self.last_summary: dict[str, Any] | None = None  # the summary of the last step, when it ended

    async def start(self) -> Reply:
        return await self.send(Event(kind="start", channel=self.channel))

    async def type(self, line: str) -> Reply:
        """One typed line: a carrier keyword on a text channel, else the provider's event."""
        self.last_summary = None
        keyword = keyword_kind(line) if self.caps.idiom != "voice" else None
        spoken = self.compiled.variant(self.session.language)  # the contact's language, as the server answers
        if keyword == "opt_out":
            self.opted_out = True
            return Reply(lines=[spoken.words["opt_out"]], keyword=keyword)
        if keyword == "opt_in":
            self.opted_out = False
            return Reply(lines=[spoken.words["opt_in"]], keyword=keyword)
        if keyword == "help":
            return Reply(lines=[help_answer(spoken, self.env)], keyword=keyword)
        if self.opted_out:  # the server runs no turn for a contact who said STOP
            return Reply()
        return await self.send(event_for(line, self.channel, self.ask))

    async def send(self, event: Event) -> Reply:
        if event.kind != "start":
            self.now += SECONDS_PER_TURN
        result = await self.engine.turn(self.session, event, self.now)
        self.session, self.last_summary = result.session, result.summary
        if self.session.channel != self.channel and self.session.channel in CAPABILITIES:  # text-back
            self.channel, self.caps = self.session.channel, CAPABILITIES[self.session.channel]
        reply = Reply(ended=result.ended, staff=staff_messages(self.compiled, result))
        reply.sent = [f"{m.via}: {m.text}" + (f" (to {m.target})" if m.target else "")
                      for m in result.messages if m.kind == "send"]
        zone = ZoneInfo(self.compiled.settings.timezone)
        reply.reminders = [f"{r.flow} by {r.channel} at {datetime.fromtimestamp(r.due, zone):%a %d %b %H:%M}"
                           for r in result.reminders]
        for message in contact_messages(result.messages):
            if message.kind == "ask":
                self.ask = message
            reply.lines += show(message, self.caps)
        summary = result.summary or {}
        if (result.ended and not reply.staff and not self.compiled.settings.staff_notify
                and summary.get("outcome") in NOTIFY_OUTCOMES):
            reply.untold = str(summary.get("outcome"))
        return reply


async def run_chat(
    path: str, *, channel: str, contact: str, now: str | None, stdin: TextIO, stdout: TextIO,
    connectors: ConnectorRegistry,
) -> int:
    from orchestrator.flow.validate import load_checked

    loaded = load_checked(path, connectors)  # the verdict of `validate` and `serve`: errors refuse it
    for warning in loaded.warnings:
        sys.stderr.write(warning.format() + "\n")
    compiled = compile_flow(loaded, connectors=connectors)
    talk = Conversation(compiled, connectors, channel=channel, contact=contact,
                        now=parse_now(now, compiled.timezone), env=os.environ)
    reply = await talk.start()
    while True:
        for line in reply.lines:
            stdout.write(f"bot> {line}\n")
        for message in reply.staff:
            stdout.write(f"bot> (to staff {message.target}: {message.text})\n")
        for sent in reply.sent:
            stdout.write(f"bot> (sent by {sent})\n")
        for reminder in reply.reminders:
            stdout.write(f"[reminder scheduled: {reminder}]\n")
        if reply.untold:
            stdout.write(f"[staff not told of {reply.untold}: set settings.staff_notify]\n")
        stdout.flush()
        if reply.keyword == "opt_out":
            stdout.write("[opted out: the server sends this contact nothing more until START]\n")
            return 0
        if reply.ended:
            stdout.write(f"[conversation ended: {talk.session.outcome}]\n")
            return 0
        line = stdin.readline()
        if not line:
            stdout.write("[end of input]\n")
            return 0
        if not stdin.isatty():
            stdout.write(f"you> {line.rstrip()}\n")
        reply = await talk.type(line)


def main_chat(path: str, channel: str = "sms", contact: str = "+15555550123", now: str | None = None) -> int:
    if channel not in CAPABILITIES:
        sys.stderr.write(f"--channel {channel!r}: use one of {', '.join(CAPABILITIES)}\n")
        return 2
    try:
        with calendar_db() as db:
            return asyncio.run(run_chat(
                path, channel=channel, contact=contact, now=now, stdin=sys.stdin, stdout=sys.stdout,
                connectors=chat_connectors(db),
            ))
    except OrchestratorError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
