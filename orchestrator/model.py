"""The engine's plain data: what comes in, what goes out, and what a conversation is.

Everything here is a msgspec Struct so that sessions encode to compact msgpack in ~1 µs
and cross process boundaries (Redis) unchanged. Nothing here knows a channel or vendor:
channel adapters translate provider payloads into `Event`s and render `Outbound`s.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

EventKind = Literal[
    "start",  # a new conversation (incoming call, first message, outbound start)
    "text",  # typed text (SMS, WhatsApp, chat)
    "speech",  # voice SpeechResult, with confidence
    "digits",  # DTMF digits
    "choice",  # a button / list reply id (WhatsApp interactive, template quick reply)
    "media",  # an image / audio / document without usable text
    "location",
    "timeout",  # no reply within settings.no_reply_timeout (fired by a timer)
    "empty",  # voice Gather ended with nothing said or pressed
    "hangup",  # the call ended (status callback)
    "recording",  # a <Record> finished (url, duration, transcription)
    "dial",  # a <Dial> handoff ended: text = DialCallStatus (completed, no-answer, busy...)
    "reaction",
    "undelivered",  # a message to the contact could not be delivered: text = provider error code or ""
    "call_recording",  # the whole call's recording is ready (settings.recording): recording_url, duration
    "transcription",  # a recording's transcription arrived: text, recording_url (the recording it is of)
]


class Media(msgspec.Struct, kw_only=True, omit_defaults=True):
    url: str | None = None
    id: str | None = None  # provider media id (WhatsApp)
    content_type: str | None = None
    caption: str | None = None


class Location(msgspec.Struct, kw_only=True, omit_defaults=True):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One inbound happening, already verified and parsed by a channel adapter."""

    kind: EventKind
    channel: str = "chat"  # voice | sms | whatsapp | chat | ... (the idiom, not the vendor)
    text: str | None = None
    confidence: float | None = None  # speech
    choice_id: str | None = None
    media: list[Media] = []
    location: Location | None = None
    provider_id: str | None = None  # MessageSid, wamid, CallSid+step: the dedupe key
    recording_url: str | None = None
    duration_seconds: float | None = None
    profile_name: str | None = None  # WhatsApp profile name, caller name
    machine: bool = False  # voice start: Twilio's answering machine detection heard a machine (AnsweredBy)


class OutChoice(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    label: str
    dtmf: str | None = None
    match: list[str] = []
    description: str | None = None


OutboundKind = Literal["say", "ask", "handoff", "record", "end", "notify", "send"]


class Outbound(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One thing the engine wants said or done. Channel adapters render it in their idiom.

    - say: text (+ media_url)
    - ask: text + choices (empty for free input) + input kind; `reprompt` True when re-asking
    - handoff: text to the contact + target (staff number); voice dials it
    - record: text prompt, then a voicemail recording of at most max_seconds
    - end: the conversation is over (voice hangs up); outcome label
    - notify: a message to staff (target), not to the contact
    - send: a message (`call: message.send`) to the contact, or to `target`, on the text
      channel `via` (sms | whatsapp), through the outbox; `template` outside WhatsApp's 24 h
    """

    kind: OutboundKind
    text: str = ""
    state: str = ""
    choices: list[OutChoice] = []
    input: str | None = None
    reprompt: bool = False
    media_url: str | None = None
    target: str | None = None
    outcome: str | None = None
    max_seconds: float | None = None
    language: str | None = None
    voice: str | None = None
    whisper: bool = False  # voice handoff: the person answering hears `_whisper` and presses 1 to accept
    via: str | None = None  # send: the channel idiom it goes out on
    template: str | None = None  # send: the WhatsApp template outside the 24 h window


class TranscriptEntry(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """One line of a conversation's record. `dir`: in | out | state | var | call | note."""

    at: float  # epoch seconds
    dir: str
    text: str = ""
    data: Any = None


SessionStatus = Literal["active", "ended"]


class Session(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A conversation's live state: plain data, bound to the compiled machine only during a turn.

    `id` is derived from (business address, contact) so the same conversation continues
    across channels."""

    id: str
    flow: str
    revision: str
    state: str
    business: str = ""  # the business's number or WhatsApp phone-number id
    contact: str = ""  # the contact's E.164 number
    channel: str = "chat"  # channel of the last inbound event
    adapter: str = ""  # the channel adapter of the last inbound event: timers and the outbox answer on it
    vars: dict[str, Any] = {}
    retries: int = 0  # failed answers to the current ask
    reminders: int = 0  # no-reply reminders sent for the current ask
    status: SessionStatus = "active"
    outcome: str | None = None
    started_at: float = 0.0
    updated_at: float = 0.0
    last_inbound_at: float = 0.0  # WhatsApp 24 h customer-service window
    turns: int = 0  # inbound events applied
    version: int = 0  # bumped on every save (fencing / compare-and-set)
    language: str | None = None  # SPEC §9: the contact's language (a declared one); None: the flow's default
    path: list[str] = []  # states visited, each once, in order of first visit (funnel / drop-off analytics)
    fmt: int = 1  # stored format (store.FORMATS): stays 1 by default, a newer format sets it


class Timer(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A no-reply timer: fires a `timeout` event for `session_id` at `due` unless the
    conversation moved on (its `turns` no longer equals `turns`)."""

    session_id: str
    due: float
    turns: int


class ReminderDue(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An appointment reminder a booking of this turn scheduled: at `due`, start `flow` with
    the contact, unless booking `booking_id` no longer starts at `start` (cancelled, moved)."""

    due: float
    flow: str
    booking_id: str
    start: str  # the booking's ISO start, as the connector gave it
    channel: str = "sms"  # the text channel it goes out on


class TurnResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one engine turn produced: the new session, what to say, what to record."""

    session: Session
    messages: list[Outbound] = []
    transcript: list[TranscriptEntry] = []
    timer: Timer | None = None  # the no-reply timer to (re)arm; None clears it
    ended: bool = False
    summary: dict[str, Any] | None = None  # at the end: name, reason, wanted, outcome, booking
    reminders: list[ReminderDue] = []  # appointment reminders of the bookings made in this turn
