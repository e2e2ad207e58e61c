"""`orchestrator chat FILE`: talk to a flow in the terminal, in one channel's idiom.

Self-contained: the engine, a fresh session and the connectors installed as entry points
(the embedded calendar keeps its bookings in `$ORCHESTRATOR_CALENDAR_DB`, else in a
temporary file dropped at exit). The bot speaks first, as on an incoming call or a
text-back; then every stdin line is one answer. Bot lines are printed as `bot> ...`,
rendered through `orchestrator.render.present` with the channel's capabilities:

- sms: a numbered menu (`1) Book a visit`); type the number or the words
- whatsapp: `[Book a visit] [Opening hours]` buttons, or a list; type a title to tap it
- voice: "For Book a visit, press 1."; typed digits are keypad presses, an empty line is silence

The clock starts at `--now` (ISO, default: now) and moves 5 seconds per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .channels import Capabilities
from .compiler import compile_flow
from .connectors import ConnectorRegistry, default_connectors
from .engine import Engine
from .errors import OrchestratorError
from .model import Event, Outbound
from .render import present

VOICE = Capabilities(idiom="voice", speech=True, dtmf=True)
SMS = Capabilities(idiom="sms", segment_budget=3, max_text_len=1600)
WHATSAPP = Capabilities(idiom="whatsapp", max_buttons=3, button_title_len=20, max_list_rows=10, row_title_len=24)
CAPABILITIES: dict[str, Capabilities] = {"voice": VOICE, "sms": SMS, "whatsapp": WHATSAPP}
CALENDAR_DB_ENV = "ORCHESTRATOR_CALENDAR_DB"
BUSINESS = "+15555550100"
SECONDS_PER_TURN = 5.0
SPEECH_CONFIDENCE = 0.92


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
        return [shown.text, "[Choose]", *rows]
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


def parse_now(text: str | None) -> float:
    if not text:
        return time.time()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise OrchestratorError(f"--now {text!r}: write an ISO date-time, e.g. 2026-11-25T12:00-05:00") from None
    return when.timestamp()


async def run_chat(
    path: str, *, channel: str, contact: str, now: float, stdin: TextIO, stdout: TextIO,
    connectors: ConnectorRegistry,
) -> int:
    from .validate import load_checked

    caps = CAPABILITIES[channel]
    loaded = load_checked(path, connectors)  # the verdict of `validate` and `serve`: errors refuse it
    for warning in loaded.warnings:
        sys.stderr.write(warning.format() + "\n")
    compiled = compile_flow(loaded)
    engine = Engine(compiled, connectors)
    session = engine.new_session(f"{BUSINESS}:{contact}", business=BUSINESS, contact=contact,
                                 channel=channel, now=now)
    event = Event(kind="start", channel=channel)
    ask: Outbound | None = None
    while True:
        result = await engine.turn(session, event, now)
        session = result.session
        if session.channel != channel and session.channel in CAPABILITIES:  # text-back after a hangup
            channel, caps = session.channel, CAPABILITIES[session.channel]
        for message in result.messages:
            if message.kind == "ask":
                ask = message
            for line in show(message, caps):
                stdout.write(f"bot> {line}\n")
        stdout.flush()
        if result.ended:
            stdout.write(f"[conversation ended: {session.outcome}]\n")
            return 0
        line = stdin.readline()
        if not line:
            stdout.write("[end of input]\n")
            return 0
        if not stdin.isatty():
            stdout.write(f"you> {line.rstrip()}\n")
        now += SECONDS_PER_TURN
        event = event_for(line, channel, ask)


def main_chat(path: str, channel: str = "sms", contact: str = "+15555550123", now: str | None = None) -> int:
    if channel not in CAPABILITIES:
        sys.stderr.write(f"--channel {channel!r}: use one of {', '.join(CAPABILITIES)}\n")
        return 2
    try:
        start = parse_now(now)
        with calendar_db() as db:
            return asyncio.run(run_chat(
                path, channel=channel, contact=contact, now=start, stdin=sys.stdin, stdout=sys.stdout,
                connectors=chat_connectors(db),
            ))
    except OrchestratorError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
