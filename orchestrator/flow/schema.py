"""The flow language as msgspec Structs: the schema *is* the documentation.

A state is a mapping whose *kind* is given by which of the kind keys it holds
(`ask`, `call`, `branch`, `handoff`, `record`, `say`, `end`). The loader infers the
kind, injects it as the `kind` tag, and lets msgspec decode the tagged union with unknown
fields forbidden. `say` + `end` and `handoff` + `end` are allowed (speak, then end);
a state holding only `end` is an end state.

Durations are strings like `30s`, `10m`, `2h`, `1d` (see `parse_duration`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

InputKind = Literal[
    "text", "name", "number", "yes_no", "date", "time", "datetime", "phone", "email", "choice"
]
INPUT_KINDS: tuple[str, ...] = (
    "text", "name", "number", "yes_no", "date", "time", "datetime", "phone", "email", "choice",
)
STATE_KINDS: tuple[str, ...] = ("ask", "call", "branch", "handoff", "record", "say", "end")
CHANNELS: tuple[str, ...] = ("voice", "sms", "whatsapp")

# A text the contact reads or hears: one string, or one per declared language (SPEC §9,
# `{en: "...", es: "..."}`); `orchestrator.languages.texts.localize` turns a flow's maps
# into the strings of one language before it is compiled.
Text = str | dict[str, str]
Words = list[str] | dict[str, list[str]]  # `match:` phrases, likewise per language

Identifier = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]+$")]
Duration = Annotated[str, msgspec.Meta(pattern=r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$")]

# A connector step is bounded well inside Twilio's 15 s webhook timeout and the conversation
# lock (ORCHESTRATOR_LOCK_TTL_SECONDS, 10 s): `validate` refuses a `timeout:` above it.
MAX_CALL_TIMEOUT_SECONDS = 8.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`"10m"` -> 600.0 seconds. Raises ValueError naming the accepted forms."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"bad duration {text!r}: write a number and a unit, e.g. 30s, 10m, 2h, 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    pass


class BusinessHours(Base):
    """Opening hours per weekday, `"09:00-17:00"`, several ranges comma-separated, or
    `closed`. A day not listed is closed (`{sat: "09:00-13:00"}` opens Saturdays only);
    a flow without `business_hours` gets Monday to Friday, 09:00-17:00."""

    mon: str | None = None
    tue: str | None = None
    wed: str | None = None
    thu: str | None = None
    fri: str | None = None
    sat: str | None = None
    sun: str | None = None


def default_business_hours() -> BusinessHours:
    weekday = "09:00-17:00"
    return BusinessHours(mon=weekday, tue=weekday, wed=weekday, thu=weekday, fri=weekday)


class StaffMember(Base):
    """`settings.staff` entry: a person (or room) booked in a calendar of their own."""

    name: str | None = None  # what the contact sees ("10:00 AM · Ana"); default: the id, titled
    calendar: str | None = None  # Google Calendar: their calendar id (the embedded calendar keeps one per id)
    hours: BusinessHours | None = None  # their own week (a day not listed: off); unset: business_hours
    days_off: list[str] = []  # ISO dates they are away, on top of settings.closed_dates


class ReminderRule(Base):
    """`settings.reminders` item: `before` the booked start, start `flow` with the contact."""

    before: Duration
    flow: Identifier
    channel: Literal["same", "sms", "whatsapp"] = "same"  # same: the booking's text channel (a call's: sms)


class Settings(Base):
    timezone: str = "UTC"
    language: str = "en-US"
    languages: list[str] = []  # SPEC §9: the languages a flow speaks, the first the default
    language_by_country: dict[str, str] = {}  # E.164 country code -> language of a contact of it
    max_retries: int = 2
    no_reply_timeout: Duration | None = None  # messaging channels: remind, then abandon
    session_ttl: Duration = "24h"
    on_hangup: Literal["end", "text_back"] = "end"
    business_hours: BusinessHours = msgspec.field(default_factory=default_business_hours)
    closed_dates: list[str] = []  # ISO dates (holidays, closures)
    min_notice: Duration = "1h"  # earliest bookable slot from now (lead time)
    max_ahead: Duration | None = None  # latest bookable slot from now; unset: no limit
    max_per_day: int | None = None  # visits one calendar (one of settings.staff) takes a day; unset: no cap
    buffer: Duration = "0m"  # gap kept between visits
    slot_length: Duration = "30m"
    recording: bool = False  # voice: record the call; the consent notice is spoken first
    transcription: bool = False
    consent_notice: Text = "This call may be recorded for quality and training purposes."
    voice: Text | None = None  # TwiML <Say voice>; unset: the language's own (Polly.Joanna for English)
    speech_confidence: float = 0.4  # voice: below this a SpeechResult is re-asked
    reminder: Text = "Are you still there? Just reply to continue."
    help_text: Text | None = None  # SMS/WhatsApp HELP answer; unset: ORCHESTRATOR_HELP_TEXT, then a default
    sms_segment_budget: int = 3  # longest SMS reply, in segments
    whatsapp_template: Text | None = None  # template for proactive messages outside 24 h (one per language)
    whatsapp_template_language: Text = "en_US"
    retention_days: int = 30  # transcripts kept this long after the conversation ends
    staff_notify: str | None = None  # phone (E.164) told about handoffs and bookings
    summary: Text | None = None  # template of the staff summary text (context: prompts' + summary, fields)
    max_auto_steps: int = 50  # automatic states in one turn before a loop error
    fill_ahead: bool = True  # one message fills every ask ahead whose value it holds (SPEC §8)
    # ---- voice guards (#20) ----
    voice_filler_after: Duration = "800ms"  # a slower voice turn says a filler and continues by <Redirect>
    voice_filler: Text | None = None  # the filler's words; unset: the catalogue's per connector
    max_call_seconds: int = 600  # voice: a call this long ends politely (defaults.stuck) with a text-back; 0: no cap
    max_stuck_turns: int = 3  # voice: turns in a row without progress before the same; 0: no cap
    recording_notice: bool = True  # false: the owner knowingly records (`record`) without a notice before it
    # voice: a call answered by voicemail or a call-screening assistant (no `on: {machine: ...}` route)
    on_machine: Literal["text_back", "hang_up", "leave_message"] = "text_back"
    machine_message: Text = "Hello, this is {{ flow_title }}. Sorry we missed you. We'll send you a text message."
    reminders: list[ReminderRule] = []  # appointment reminders scheduled by each booking
    staff: dict[str, StaffMember] = {}  # people booked in calendars of their own (calendar.find_slots staff:)
    sending_hours: str = "09:00-20:00"  # proactive messages (reminders) go out only within these local hours


class Choice(Base):
    label: Text | None = None  # shown on buttons and menus; defaults to the choice id
    match: Words = []  # keywords (speech or text)
    dtmf: str | None = None  # a keypad digit on voice
    description: Text | None = None  # WhatsApp list row description
    duration: Duration | None = None  # a service's length: `{{ service | duration }}` in calendar args


class Intent(Base):
    """Global: interrupts any `ask` when matched."""

    goto: str
    match: Words = []
    dtmf: str | None = None


class Answer(Base):
    """Global: a question asked at any ask ("are you open saturday?") is answered and the ask
    repeated."""

    say: Text
    match: Words = []


class ChannelOverride(Base):
    """Per-channel replacement of a state's prompt text (`voice:`, `sms:`, `whatsapp:`)."""

    say: Text | None = None
    ask: Text | None = None
    reprompt: Text | None = None
    handoff: Text | None = None
    record: Text | None = None
    media: str | None = None


class BranchCase(Base):
    goto: str
    when: str | None = None  # a jinja2 expression; omitted = otherwise


class StateBase(Base, tag_field="kind", kw_only=True):
    voice: ChannelOverride | None = None
    sms: ChannelOverride | None = None
    whatsapp: ChannelOverride | None = None
    description: str | None = None  # for the diagram and the admin


class SayState(StateBase, tag="say", kw_only=True):
    say: Text
    media: str | None = None  # an image/audio URL template (MMS, WhatsApp, <Play>)
    next: str | None = None
    end: str | None = None  # outcome label: speak, then end
    on: dict[str, str] = {}  # undelivered -> state (only while the session rests here)


class AskState(StateBase, tag="ask", kw_only=True):
    ask: Text
    input: InputKind | None = None  # default: choice when choices are given, else text
    choices: dict[str, Choice] | None = None
    choices_from: str | None = None  # a variable holding a list (e.g. slots)
    save: str | None = None
    label: Text | None = None  # the saved answer's name in the staff summary; default: the save name humanised
    reprompt: Text | None = None  # said when the answer is not understood
    pattern: str | None = None  # regex the (text) answer must match
    first_only: bool = False  # a `name` ask: keep the first name alone (pets, "who should we ask for?")
    max_retries: int | None = None  # default settings.max_retries
    fill_ahead: bool | None = None  # false: never filled from an earlier message (default settings.fill_ahead)
    confirm: bool | Text | None = None  # true or a template: read the value back, take yes / no / a correction
    next: str | None = None
    on: dict[str, str] = {}  # choice id | fail | timeout | undelivered -> state


class CallState(StateBase, tag="call", kw_only=True):
    call: str  # connector.action
    args: dict[str, Any] = {}
    save: str | None = None
    label: Text | None = None  # the saved result's name in the staff summary; default: the save name humanised
    timeout: Duration = "8s"
    next: str | None = None  # same as on.ok
    on: dict[str, str] = {}  # ok | empty | conflict | error -> state


class BranchState(StateBase, tag="branch", kw_only=True):
    branch: list[BranchCase]


class HandoffState(StateBase, tag="handoff", kw_only=True):
    handoff: str  # the staff number (template); voice dials it, messaging notifies staff
    say: Text | None = None  # told to the contact first
    next: str | None = None
    on: dict[str, str] = {}  # no_answer (voice <Dial> not answered) | undelivered -> state
    end: str | None = None
    timeout: Duration | None = None  # voice: how long the staff phone rings (default 20s)
    whisper: bool = True  # voice: the person answering hears who is calling and why, and presses 1 to accept


class RecordState(StateBase, tag="record", kw_only=True):
    record: Text  # the prompt before the beep
    save: str | None = None
    label: Text | None = None  # the recording's name in the staff summary; default: the save name humanised
    max_length: Duration = "2m"
    notice: bool | Text | None = None  # said before the prompt: true = settings.consent_notice, or a template
    next: str | None = None
    end: str | None = None
    on: dict[str, str] = {}  # undelivered -> state (the prompt could not be delivered)


class EndState(StateBase, tag="end", kw_only=True):
    end: str  # outcome label (analytics)
    say: Text | None = None


State = AskState | CallState | BranchState | HandoffState | RecordState | SayState | EndState
STATE_TYPES: dict[str, type[StateBase]] = {
    "ask": AskState, "call": CallState, "branch": BranchState, "handoff": HandoffState,
    "record": RecordState, "say": SayState, "end": EndState,
}


class Defaults(Base):
    """Routes taken by every state that does not route them itself."""

    fail: str | None = None  # an ask's answers not understood after max_retries
    timeout: str | None = None  # no reply after the reminder (messaging)
    error: str | None = None  # a connector call failed (and empty / conflict when not routed)
    limit: str | None = None  # many businesses: a new conversation past the business's daily limit starts here
    stuck: str | None = None  # voice: a call going nowhere (silence, no progress, too long) instead of a polite end


class Flow(Base):
    flow: Identifier
    start: str
    states: dict[str, State]
    title: str | None = None
    vars: dict[str, Any] = {}
    settings: Settings = msgspec.field(default_factory=Settings)
    intents: dict[str, Intent] = {}
    answers: dict[str, Answer] = {}
    defaults: Defaults = msgspec.field(default_factory=Defaults)


def plain(value: Text) -> str:
    """A text as one string. A compiled flow is localized first (`flow.localize`), so a map
    only reaches here in a flow `validate` refuses; its first entry is taken then."""
    return value if isinstance(value, str) else next(iter(value.values()), "")


def plain_words(value: Words) -> list[str]:
    """`match:` phrases as one list (a map only before `flow.localize`: all its phrases)."""
    return value if isinstance(value, list) else [w for words in value.values() for w in words]


def infer_kind(state: dict[str, Any]) -> str | None:
    """The kind of a raw state mapping: the first kind key it holds, in priority order.

    `say` with `end` is a say state; `end` alone an end state."""
    for kind in STATE_KINDS:
        if kind in state and kind != "end":
            return kind
    return "end" if "end" in state else None


def decode_flow(raw: dict[str, Any]) -> Flow:
    """Plain data (from YAML) -> Flow. Injects the `kind` tag of each state.

    Raises msgspec.ValidationError with a `$.path` naming the bad value; the loader maps
    that path back to a line and column."""
    states = raw.get("states")
    if isinstance(states, dict):
        fixed: dict[str, Any] = {}
        for name, body in states.items():
            if isinstance(body, dict) and "kind" not in body:
                kind = infer_kind(body)
                body = {"kind": kind, **body} if kind else body
            fixed[name] = body
        raw = {**raw, "states": fixed}
    return msgspec.convert(raw, Flow, strict=False)
