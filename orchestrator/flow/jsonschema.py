"""JSON Schema of the flow language, for editor completion (`orchestrator schema`).

Generated from `schema.Flow` by msgspec, then adjusted to describe the YAML people
write: a state has no `kind` key there (the loader infers the kind from which key is
present), so each state is `anyOf` the state objects with the tag optional and no
discriminator. `additionalProperties: false` stays, so editors flag a typo'd key.

Point an editor at it with a first line `# yaml-language-server: $schema=flow.schema.json`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from orchestrator.flow import schema

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://orchestrator.invalid/schemas/flow.schema.json"

_STATE_HELP: dict[str, str] = {
    "SayState": "say: send or speak a message, then go to `next` or finish with `end`.",
    "AskState": "ask: ask a question and wait for the answer (`input`, `choices`, `save`, `on`).",
    "CallState": "call: run a connector action such as calendar.find_slots; route by `on: {ok, empty, "
                 "conflict, error}`.",
    "BranchState": "branch: go to the first case whose `when` expression is true; the last case has no `when`.",
    "HandoffState": "handoff: transfer the call or notify staff; `on: {no_answer}` on voice.",
    "RecordState": "record: take a voicemail after the prompt.",
    "EndState": "end: finish the conversation with an outcome label (analytics).",
}
_DEF_HELP: dict[str, str] = {
    "Flow": "A flow file: its id, first state, constants, settings, global intents, defaults and states.",
    "Settings": "Per-flow settings (docs/SPEC.md section 13, the settings table).",
    "BusinessHours": "Opening hours per weekday: \"09:00-17:00\", several ranges comma-separated, or closed. "
                     "A day not listed is closed; without business_hours: Monday to Friday 09:00-17:00.",
    "Defaults": "Routes taken by every state that does not route them itself.",
    "Choice": "One answer of an ask: its label, the words that pick it, its keypad key.",
    "Intent": "A global intent: matched on every ask before the answer itself, it jumps to `goto`.",
    "ChannelOverride": "Per-channel replacement of a state's texts (under voice:, sms: or whatsapp:).",
    "BranchCase": "One case of a branch: `goto` when `when` is true (the last case has no `when`).",
}

# One description per key of the flow language, keyed "Struct.field". Keys every state has
# are under "StateBase". An entry for a key the schema does not (yet) have is ignored here;
# tests/flow/test_jsonschema.py fails on a key without a description.
DESCRIPTIONS: dict[str, str] = {
    # -- Flow (top level)
    "Flow.flow": "The flow id: lowercase letters, digits and _.",
    "Flow.title": "Shown to people (the business name); available to templates as flow_title.",
    "Flow.start": "The name of the first state.",
    "Flow.vars": "Constants available to every template and condition; a name defined here wins over a "
                 "built-in (the built-in stays reachable as sys.<name>).",
    "Flow.settings": "Timezone, language, retries, opening hours and channel behaviour.",
    "Flow.intents": "Global intents: they can interrupt any question (ask state).",
    "Flow.answers": "Questions answered at any ask, which is then repeated: `hours: {match: [open, hours], "
                    "say: \"We're open ...\"}` (replies only to a message that is a question).",
    "Flow.defaults": "Routes for every state that does not route them itself: {fail, timeout, error}.",
    "Flow.states": "The states by name. A state's kind is the key it holds: say, ask, call, branch, handoff, "
                   "record or end.",
    # -- Settings
    "Settings.timezone": "IANA time zone of the business (default UTC): `now`, dates the contact says, "
                         "opening hours and slots are in it.",
    "Settings.language": "Language tag such as en-US (default): its region picks 12/24-hour times and date "
                         "order; voice speaks in it.",
    "Settings.languages": "The languages the flow speaks, the first the default (`[en, es]`); every text may then "
                          "be a map by language (`ask: {en: \"...\", es: \"...\"}`) and validate reports one missing.",
    "Settings.language_by_country": "A contact's language by the country code of their number "
                                    "(`{\"34\": es}`), unless they choose one (`save: sys.language`); "
                                    "else the default.",
    "Settings.max_retries": "How many times an ask re-asks an answer it did not understand before taking "
                            "on.fail (default 2; an ask's own max_retries wins).",
    "Settings.no_reply_timeout": "SMS/WhatsApp: after this long without a reply the reminder is sent and the "
                                 "question repeated; after it again, on.timeout or the outcome abandoned. "
                                 "Unset: no reminder.",
    "Settings.session_ttl": "How long a conversation is kept after its last message (default 24h); a message "
                            "after that starts afresh.",
    "Settings.on_hangup": "end (default): a call hung up mid-flow ends hung_up; text_back: a call hung up "
                          "during a question continues by SMS with that question.",
    "Settings.business_hours": "Opening hours per weekday (mon..sun); days not listed are closed. Used by "
                               "open_now / next_open and by the calendar's slots.",
    "Settings.closed_dates": "ISO dates (YYYY-MM-DD) the business is closed: holidays, closures.",
    "Settings.min_notice": "Earliest bookable slot, counted from now (default 1h).",
    "Settings.max_ahead": "Latest bookable slot, counted from now, e.g. 60d (default: no limit); a later wish "
                          "hears 'We take bookings up to ...' (or routes too_far).",
    "Settings.max_per_day": "Visits one calendar (each of settings.staff) takes on a day; a full day is not "
                            "offered (default: no cap).",
    "Settings.buffer": "Gap kept free between two bookings (default 0m).",
    "Settings.slot_length": "Length of a visit and step between slot starts (default 30m); "
                            "calendar.find_slots' duration overrides the length.",
    "Settings.recording": "Voice: speak consent_notice when the call starts (default false).",
    "Settings.transcription": "Voice: ask Twilio to transcribe the recordings of record states (default false).",
    "Settings.consent_notice": "Voice: said first when recording is on (a template).",
    "Settings.voice": "Voice: the Twilio <Say> voice, or one per language (default: the language's own, "
                      "Polly.Joanna for English).",
    "Settings.speech_confidence": "Voice: speech recognised below this confidence (0-1, default 0.4) is asked "
                                  "again.",
    "Settings.reminder": "SMS/WhatsApp: sent when no_reply_timeout passes, before the question is repeated "
                         "(a template).",
    "Settings.help_text": "SMS/WhatsApp: the answer to HELP. Unset: ORCHESTRATOR_HELP_TEXT, then a default "
                          "naming the business.",
    "Settings.sms_segment_budget": "SMS: the longest reply in segments (default 3); longer text is split "
                                   "into messages of at most this size.",
    "Settings.whatsapp_template": "WhatsApp: the approved template used to reach a contact outside the 24-hour "
                                  "window (outbound, reminders). Unset: such messages fail.",
    "Settings.reminders": "Appointment reminders each booking schedules, e.g. "
                          "[{before: 24h, flow: appointment_reminder}].",
    "Settings.staff": "People (or rooms) booked in calendars of their own, by id: {ana: {name: Ana}}; "
                      "calendar.find_slots takes staff: <id> or any.",
    "StaffMember.name": "The name the contact sees beside a time (default: the id, titled).",
    "StaffMember.calendar": "Google Calendar: this person's calendar id (the embedded calendar keeps one per id).",
    "StaffMember.hours": "This person's own week, like business_hours ({tue: 10:00-18:00}); a day not listed "
                         "is off (default: the business's hours).",
    "StaffMember.days_off": "ISO dates this person is away (YYYY-MM-DD), on top of settings.closed_dates.",
    "Settings.sending_hours": "Local hours (HH:MM-HH:MM) within which reminders go out; default 09:00-20:00.",
    "ReminderRule.before": "How long before the booked start the reminder goes out (moved earlier into sending_hours).",
    "ReminderRule.flow": "The flow id started with the contact, with `booking` set (e.g. appointment_reminder).",
    "ReminderRule.channel": "same (the booking's text channel; a call's goes by SMS), sms or whatsapp.",
    "Settings.whatsapp_template_language": "WhatsApp: the language code of whatsapp_template (default en_US).",
    "Settings.retention_days": "Days to keep transcripts after the conversation ends (default 30). This build "
                               "applies ORCHESTRATOR_RETENTION_DAYS server-wide.",
    "Settings.staff_notify": "Phone number (E.164) told by SMS about handoffs and about conversations ending "
                             "booked, handed_off, message_taken, callback_requested or not_understood.",
    "Settings.fill_ahead": "One message fills every ask ahead on the path whose value it holds "
                           "unambiguously (\"this is Maria, a cleaning tomorrow at 10\"); false: one answer per "
                           "question.",
    # voice guards (#20)
    "Settings.voice_filler_after": "Voice: a turn that has not answered by then (default 800ms; e.g. a slow "
                                   "connector) says a short filler and continues: the caller never waits in "
                                   "silence.",
    "Settings.voice_filler": "Voice: the words of that filler; default per language and connector (\"One "
                             "moment while I check the calendar.\").",
    "Settings.recording_notice": "false: a record state may record with no notice before it (its prompt tells "
                                 "the caller); true (default): validate refuses that.",
    "Settings.on_machine": "Voice: a call answered by voicemail or a call-screening assistant, where the state "
                           "has no on.machine: text_back (default: hang up, text the contact), hang_up, or "
                           "leave_message (say machine_message, hang up).",
    "Settings.machine_message": "Voice: what on_machine: leave_message says to a voicemail (a template).",
    "Settings.max_call_seconds": "Voice: a call this long (default 600) ends politely with a text-back, or "
                                 "takes defaults.stuck; 0: no cap.",
    "Settings.max_stuck_turns": "Voice: answers in a row that move the call nowhere (default 3) before the "
                                "same polite end or defaults.stuck; 0: no cap.",
    "Settings.max_auto_steps": "States one turn may enter without waiting for the contact before the "
                               "conversation ends with error: a loop guard (default 50).",
    "Settings.summary": "A template for the text of the conversation's summary (the staff message, "
                        "summary.text in the admin API); it sees the prompts' context plus summary and fields "
                        "(name, label, value, text). Default: a headline and 'Label: text.' per field.",
    # -- BusinessHours
    "BusinessHours.mon": "Monday: \"09:00-17:00\", ranges comma-separated (\"08:00-12:00, 13:00-18:00\"), "
                         "or closed.",
    "BusinessHours.tue": "Tuesday: \"09:00-17:00\", ranges comma-separated, or closed.",
    "BusinessHours.wed": "Wednesday: \"09:00-17:00\", ranges comma-separated, or closed.",
    "BusinessHours.thu": "Thursday: \"09:00-17:00\", ranges comma-separated, or closed.",
    "BusinessHours.fri": "Friday: \"09:00-17:00\", ranges comma-separated, or closed.",
    "BusinessHours.sat": "Saturday: \"09:00-13:00\", ranges comma-separated, or closed.",
    "BusinessHours.sun": "Sunday: ranges such as \"10:00-14:00\", or closed.",
    # -- Defaults
    "Defaults.fail": "State for an ask whose answer was not understood after max_retries and that has no "
                     "on.fail. Unset: the built-in fallback (apology, staff notified, outcome not_understood).",
    "Defaults.timeout": "State for an ask with no reply after the reminder and no on.timeout. Unset: the "
                        "outcome abandoned.",
    "Defaults.error": "State for a call whose connector failed (also empty / conflict when not routed) and "
                      "that has no on.error.",
    "Defaults.limit": "State a new conversation starts at when its business is past limits.conversations_per_day "
                      "(many businesses); unset: a polite refusal.",
    "Defaults.stuck": "Voice: state for a call going nowhere (a second silence in a row, max_stuck_turns "
                      "answers without progress, max_call_seconds) at an ask without on.stuck. Unset: a polite "
                      "end and a text-back.",
    # -- Intent
    "Answer.match": "Words or phrases of a question that this answer replies to (\"open\", \"address\").",
    "Answer.say": "The reply (a template); the question being asked is repeated after it.",
    "Intent.match": "Words or phrases that trigger the intent in any answer.",
    "Intent.dtmf": "Voice: a keypad key that triggers the intent.",
    "Intent.goto": "The state the intent jumps to.",
    # -- Choice
    "Choice.label": "Shown on buttons, lists and menus and read out on voice; default: the choice id.",
    "Choice.match": "Words or phrases (speech or text) that pick this choice, besides its label and number.",
    "Choice.dtmf": "Voice: the keypad key of this choice (default: its position).",
    "Choice.description": "WhatsApp: the second line of this choice's list row.",
    "Choice.duration": "A service's length (45m, 2h): `{{ service | duration }}` in calendar.find_slots and "
                       "calendar.book args.",
    # -- ChannelOverride
    "ChannelOverride.say": "The text of a say, end or handoff state on this channel.",
    "ChannelOverride.ask": "The question of an ask state on this channel.",
    "ChannelOverride.reprompt": "The reprompt of an ask state on this channel.",
    "ChannelOverride.handoff": "A handoff state's message to the contact on this channel (when say: is not "
                              "given here).",
    "ChannelOverride.record": "The prompt of a record state on this channel.",
    "ChannelOverride.media": "Accepted, not used by this build: a say state's media: is the same on every "
                             "channel.",
    # -- BranchCase
    "BranchCase.when": "A condition (jinja expression) such as open_now or \"slots | length > 0\"; "
                       "omitted: always true (the last case).",
    "BranchCase.goto": "The state to go to when this case is the first true one.",
    # -- every state
    "StateBase.kind": "Optional: inferred from the key that is present.",
    "StateBase.voice": "Replacement texts for voice calls.",
    "StateBase.sms": "Replacement texts for SMS.",
    "StateBase.whatsapp": "Replacement texts for WhatsApp.",
    "StateBase.description": "A note for the diagram and the admin; never shown to the contact.",
    # -- say
    "SayState.say": "The message (a template).",
    "SayState.media": "An image or audio URL (a template): MMS on SMS, an attachment on WhatsApp, <Play> on "
                      "voice.",
    "SayState.next": "The state to go to after the message.",
    "SayState.end": "Instead of next: end the conversation with this outcome after the message.",
    # -- ask
    "AskState.ask": "The question (a template).",
    "AskState.input": "What the answer is: text, name, number, yes_no, date, time, datetime, phone, email or "
                      "choice. Default: choice when choices are given, else text.",
    "AskState.choices": "The answers offered, by id: {label, match, dtmf, description}.",
    "AskState.choices_from": "A variable holding a list (e.g. the slots of calendar.find_slots): its items are "
                             "offered, numbered 1..n, before any static choices; the item itself is saved.",
    "AskState.save": "The variable the answer is saved in (a yes_no saves true / false).",
    "AskState.reprompt": "Said instead of the built-in \"Sorry, I didn't understand that.\" plus the question, "
                         "when the answer is not understood.",
    "AskState.first_only": "A `name` ask: keep the first name alone (\"Rex the dog\" -> Rex), for pets or when a "
                           "last name is not wanted; the reprompt then asks for just the name.",
    "AskState.pattern": "A regular expression the (text) answer must match (RE2: no backreferences or lookaround).",
    "AskState.max_retries": "Re-asks for this ask before on.fail (default: settings.max_retries).",
    "AskState.fill_ahead": "false: this ask is always asked, never filled from a message that answered an "
                           "earlier question (default: settings.fill_ahead).",
    "AskState.confirm": "true, or a template using {{ value }}: read the answer back and go on only after a "
                        "yes; a no (or a corrected value) asks again, names, phones and emails then spelled out.",
    "AskState.next": "The state after an understood answer (unless on names the choice).",
    "AskState.on": "Routes: a choice id, yes / no (yes_no), fail (not understood), timeout (no reply), "
                   "undelivered (the question could not be delivered).",
    "SayState.on": "Routes: undelivered (the message could not be delivered to the contact).",
    "RecordState.on": "Routes: undelivered (the prompt could not be delivered to the contact).",
    "AskState.label": "The answer's name in the summary staff read; default: the save name humanised.",
    # -- call
    "CallState.call": "The connector action, connector.action (e.g. calendar.find_slots).",
    "CallState.args": "The action's arguments; each value may be a template, and \"{{ x }}\" alone passes "
                      "the value itself (a slot mapping, a list).",
    "CallState.save": "The variable the result is saved in (on ok and empty).",
    "CallState.timeout": "How long the action may take before it counts as error (default 8s).",
    "CallState.next": "The state after ok (same as on: {ok: ...}).",
    "CallState.on": "Routes by the action's outcome: ok, empty, conflict, error; empty and conflict fall back "
                    "to error when not routed.",
    "CallState.label": "The saved result's name in the summary staff read; default: the save name humanised.",
    # -- branch
    "BranchState.branch": "The cases, in order: [{when, goto}, ..., {goto}].",
    # -- handoff
    "HandoffState.handoff": "The staff number (a template): voice dials it; on SMS/WhatsApp staff are told "
                            "(settings.staff_notify, else this number).",
    "HandoffState.say": "Told to the contact first.",
    "HandoffState.timeout": "Voice: how long the staff phone rings before on.no_answer (default 20s).",
    "HandoffState.whisper": "Voice: the person answering hears who is calling and why and presses 1 to take the "
                            "call (default true); false: connected as soon as answered.",
    "HandoffState.next": "The state after the handoff (voice with on.no_answer: after the transfer was answered).",
    "HandoffState.on": "Routes: no_answer (voice: nobody picked up the transfer), undelivered (messaging: the "
                       "message could not be delivered).",
    "HandoffState.end": "The outcome when the handoff ends the conversation (default handed_off).",
    # -- record
    "RecordState.record": "The prompt before the beep (a template).",
    "RecordState.notice": "Voice: said before the prompt: true says settings.consent_notice, a string (a "
                          "template) says itself.",
    "RecordState.save": "The variable the recording is saved in: {url, duration, transcription}.",
    "RecordState.max_length": "The longest recording (default 2m).",
    "RecordState.next": "The state after the recording.",
    "RecordState.end": "Instead of next: end with this outcome after the recording.",
    "RecordState.label": "The recording's name in the summary staff read (shown as its link); default: "
                         "the save name humanised.",
    # -- end
    "EndState.end": "The outcome label (analytics, staff notifications).",
    "EndState.say": "A last message (a template).",
}


_STATE_NAMES = frozenset(cls.__name__ for cls in schema.STATE_TYPES.values())


def description(definition: str, key: str) -> str | None:
    """The description of `definition.key`; keys every state has fall back to StateBase."""
    text = DESCRIPTIONS.get(f"{definition}.{key}")
    if text is None and definition in _STATE_NAMES:
        text = DESCRIPTIONS.get(f"StateBase.{key}")
    return text


def _state_ref(name: str) -> str:
    return f"#/$defs/{name}"


def flow_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) a YAML flow file validates against."""
    generated: dict[str, Any] = msgspec.json.schema(schema.Flow)
    defs: dict[str, Any] = generated["$defs"]
    for cls in schema.STATE_TYPES.values():
        definition = defs[cls.__name__]
        definition["required"] = [r for r in definition.get("required", []) if r != "kind"]
        definition["description"] = _STATE_HELP.get(cls.__name__, "")
    for name, definition in defs.items():
        if name in _DEF_HELP and not definition.get("description"):
            definition["description"] = _DEF_HELP[name]
        for key, prop in definition.get("properties", {}).items():
            text = description(name, key)
            if text:
                prop["description"] = text
    flow = defs["Flow"]
    states = flow["properties"]["states"]
    states["additionalProperties"] = {"anyOf": [{"$ref": _state_ref(c.__name__)} for c in schema.STATE_TYPES.values()]}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "Conversation orchestrator flow",
        "description": "A YAML flow: states (say, ask, call, branch, handoff, record, end) driven over voice, "
                       "SMS and WhatsApp. Check a file with `orchestrator validate FILE`.",
        "$ref": "#/$defs/Flow",
        "$defs": defs,
    }


def main_schema() -> int:
    """`orchestrator schema`: print the JSON Schema."""
    sys.stdout.write(json.dumps(flow_json_schema(), indent=2) + "\n")
    return 0
