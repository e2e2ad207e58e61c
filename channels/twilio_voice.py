"""Twilio Voice: an incoming call is a conversation; each answer is a webhook.

Routes (all POST, all signed with X-Twilio-Signature):
- `/webhooks/twilio/voice`            incoming call -> `start` (provider id: CallSid)
- `/webhooks/twilio/voice/gather`     `<Gather>` action -> speech | digits | empty
- `/webhooks/twilio/voice/record`     `<Record>` action -> recording
- `/webhooks/twilio/voice/recording`  recordingStatusCallback -> the same recording (deduped)
- `/webhooks/twilio/voice/dial`       `<Dial>` action -> dial (text = DialCallStatus)
- `/webhooks/twilio/voice/status`     call status -> hangup (text = CallStatus) when terminal
- `/webhooks/twilio/voice/call-recording`  `<Start><Recording>` status -> call_recording (settings.recording)
- `/webhooks/twilio/voice/transcription`   `<Record transcribeCallback>` -> transcription
- `/webhooks/twilio/voice/whisper`     `<Number url>`: the person answering a transfer -> whisper
- `/webhooks/twilio/voice/whisper-accept`  their key press (1 accepts) -> whisper accepted / declined
- `/webhooks/twilio/voice/continue`   `<Redirect>` after a filler -> the slow turn's answer
                                      (`?wait=<its provider id after the CallSid>&n=<round>`)

Twilio's recording and transcription callbacks carry no From / To: their URLs carry the
conversation (`?s=<session id>`, covered by the signature like the rest of the URL).

Action URLs carry `?step=<nonce>` so that CallSid + step is a stable dedupe id for one
answer: Twilio's retries repeat the URL, a new question gets a new step.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
from typing import Any
from urllib.parse import quote

from orchestrator.engine.render import present
from orchestrator.errors import BadRequest, SendError
from orchestrator.model import Event, Outbound
from orchestrator.plugins.channels import (
    Address,
    Capabilities,
    ChannelAdapter,
    Inbound,
    InboundRequest,
    Rendered,
    ReplyContext,
)

from ._twilio import (
    TWIML_MEDIA_TYPE,
    TwilioSettings,
    TwilioSignatureVerifier,
    action_url,
    element,
    form_of,
    response,
    rest_client,
    send_error_from,
    twilio_configured,
)

BASE = "/webhooks/twilio/voice"
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
DIAL_TIMEOUT_SECONDS = 20
WHISPER_SECONDS = 8  # how long the person answering a transfer has to press 1
_MAX_HINTS = 50  # Twilio accepts up to 500 hint phrases; a menu needs far fewer


def _step() -> str:
    return secrets.token_hex(4)


class TwilioVoiceChannel(ChannelAdapter):
    name = "twilio_voice"
    # outbound: `place_call` (Calls API with answering machine detection); the flow runs on answer
    capabilities = Capabilities(idiom="voice", dtmf=True, speech=True, sync_reply=True, max_text_len=4096,
                                outbound=True)
    signs_url = True  # X-Twilio-Signature covers the URL called: needs ORCHESTRATOR_PUBLIC_URL
    routes: tuple[tuple[str, str], ...] = (
        ("POST", BASE),
        ("POST", f"{BASE}/gather"),
        ("POST", f"{BASE}/record"),
        ("POST", f"{BASE}/recording"),
        ("POST", f"{BASE}/dial"),
        ("POST", f"{BASE}/status"),
        ("POST", f"{BASE}/continue"),
        ("POST", f"{BASE}/call-recording"),
        ("POST", f"{BASE}/transcription"),
        ("POST", f"{BASE}/whisper"),
        ("POST", f"{BASE}/whisper-accept"),
    )

    settings_type = TwilioSettings
    env_prefix = "TWILIO_"

    def __init__(self, *, auth_token: str | None = None, public_url: str | None = None,
                 account_sid: str | None = None, api_base: str | None = None) -> None:
        self._verifier = TwilioSignatureVerifier(auth_token or "")
        self._auth_token = auth_token or ""
        self.public_url = public_url or ""
        self.account_sid = account_sid or ""
        self.api_base = api_base
        self._client: Any = None

    @classmethod
    def from_settings(cls, config: TwilioSettings) -> TwilioVoiceChannel:
        return cls(auth_token=config.auth_token, public_url=config.public_url, account_sid=config.account_sid,
                   api_base=config.api_base)

    def _rest(self) -> Any:
        if self._client is None:
            self._client = rest_client(self.account_sid, self._auth_token, self.api_base)
        return self._client

    async def place_call(self, to: Address, flow_id: str, ctx: ReplyContext, ref: str = "") -> str:
        """An outbound call (`POST /api/conversations` with `channel: voice`): Twilio's Calls API
        with answering machine detection (`DetectMessageEnd`: a voicemail is answered after its
        beep, so `leave_message` is heard); the flow starts at the call's webhook, told which
        flow by `?flow=`. The call's Sid."""
        base = ctx.public_url or self.public_url
        url = action_url(base, BASE, flow=quote(flow_id, safe=""), **({"o": ref} if ref else {}))

        def create() -> str:
            call = self._rest().calls.create(to=to.contact, from_=to.business, url=url, method="POST",
                                             machine_detection="DetectMessageEnd")
            return str(call.sid)

        try:
            return await asyncio.to_thread(create)
        except Exception as exc:
            raise send_error_from(exc, f"placing a call to {to.contact[:4]}...") from exc

    async def delete_recordings(self, sids: list[str]) -> int:
        """Delete recordings at Twilio (a contact's erasure): how many went; one already gone
        counts as deleted (erasure is safe to repeat). Raises SendError on any other failure."""
        from twilio.base.exceptions import TwilioRestException

        def delete(sid: str) -> None:
            try:
                self._rest().recordings(sid).delete()
            except TwilioRestException as exc:
                if exc.status != 404:
                    raise

        for sid in sids:
            try:
                await asyncio.to_thread(delete, sid)
            except Exception as exc:
                raise send_error_from(exc, f"deleting recording {sid}") from exc
        return len(sids)

    @classmethod
    def is_configured(cls, config: TwilioSettings) -> bool:
        return twilio_configured(config)

    # ---- inbound ----------------------------------------------------------------------------

    def verify(self, request: InboundRequest) -> None:
        self._verifier.verify(request)

    def parse(self, request: InboundRequest) -> list[Inbound]:
        form = form_of(request)
        call_sid = form.first("CallSid")
        if not call_sid:
            raise BadRequest(f"{request.path}: no CallSid in the form; not a Twilio Voice webhook")
        inbound_dir = not form.first("Direction", "inbound").startswith("outbound")
        caller, called = form.first("From"), form.first("To")
        business, contact = (called, caller) if inbound_dir else (caller, called)
        sub = request.path.rstrip("/").rsplit("/", 1)[-1]
        if ":" in request.query.get("s", "") and (not (caller and called) or sub.startswith("whisper")):
            # a recording callback (no From/To), or the staff leg of a transfer: the conversation's own
            business, _, contact = request.query["s"].partition(":")
        address = Address(business=business, contact=contact)
        step = request.query.get("step", "")

        def event(kind: str, provider_id: str, **fields: Any) -> list[Inbound]:
            ev = Event(kind=kind, channel="voice", provider_id=provider_id, **fields)  # type: ignore[arg-type]
            return [Inbound(kind="event", address=address, event=ev, route_key=business)]

        if sub == "gather":
            speech = form.first("SpeechResult").strip()
            digits = form.first("Digits").strip()
            pid = f"{call_sid}:gather:{step}"
            if speech:
                confidence = _float(form.first("Confidence"))
                return event("speech", pid, text=speech, confidence=confidence)
            if digits:
                return event("digits", pid, text=digits)
            return event("empty", pid)
        if sub in ("record", "recording"):
            recording_sid = form.first("RecordingSid")
            if sub == "recording" and form.first("RecordingStatus", "completed") != "completed":
                return [Inbound(kind="ignore", address=address, route_key=business)]
            if not recording_sid:
                return event("empty", f"{call_sid}:record:{step}")
            url = form.first("RecordingUrl")
            return event(
                "recording",
                f"{call_sid}:recording:{recording_sid}",  # action and callback dedupe to one event
                recording_url=url or None,
                duration_seconds=_float(form.first("RecordingDuration")),
            )
        if sub == "whisper" or sub == "whisper-accept":
            key = whisper_key(f"{business}:{contact}", step)
            pressed = None if sub == "whisper" else "accepted" if form.first("Digits").strip() == "1" else "declined"
            return [Inbound(kind="whisper", address=address, route_key=business, message_id=key, status=pressed)]
        if sub == "dial":
            status = form.first("DialCallStatus") or "failed"
            dialled = event("dial", f"{call_sid}:dial:{step}", text=status,
                            duration_seconds=_float(form.first("DialCallDuration")))
            if request.query.get("w") == "1":  # a warm transfer: connected only once accepted
                dialled[0].message_id = whisper_key(f"{business}:{contact}", step)
            return dialled
        if sub in ("call-recording", "transcription", "recording") and not (business and contact):
            return [Inbound(kind="ignore")]  # a callback naming no conversation: nothing to attach it to
        if sub == "call-recording":  # the whole call, recorded after the notice (settings.recording)
            if form.first("RecordingStatus", "completed") != "completed" or not form.first("RecordingSid"):
                return [Inbound(kind="ignore", address=address, route_key=business)]
            return event("call_recording", f"{call_sid}:call-recording:{form.first('RecordingSid')}",
                         recording_url=form.first("RecordingUrl") or None,
                         duration_seconds=_float(form.first("RecordingDuration")))
        if sub == "transcription":
            if form.first("TranscriptionStatus", "completed") != "completed":
                return [Inbound(kind="ignore", address=address, route_key=business)]
            return event("transcription", f"{call_sid}:transcription:{form.first('TranscriptionSid')}",
                         text=form.first("TranscriptionText"), recording_url=form.first("RecordingUrl") or None)
        if sub == "continue":  # the turn a filler answered for: CallSid + its step (signed URL)
            wait = request.query.get("wait", "")
            try:
                wait_round = int(request.query.get("n", "1"))
            except ValueError:
                raise BadRequest(f"{request.path}: n={request.query.get('n')!r} is not a number") from None
            return [Inbound(kind="continue", address=address, route_key=business, wait_round=wait_round,
                            message_id=f"{call_sid}:{wait}" if wait else call_sid)]
        if sub == "status":
            status = form.first("CallStatus")
            if status not in TERMINAL_CALL_STATUSES:
                return [Inbound(kind="ignore", address=address, route_key=business)]
            return event("hangup", f"{call_sid}:status:{status}", text=status,
                         duration_seconds=_float(form.first("CallDuration")))
        # the incoming call itself (also a plain <Redirect> to the base URL), or an outbound call
        # answered (`?flow=` names the flow it was placed for; AnsweredBy: machine detection)
        answered_by = form.first("AnsweredBy")
        start = event("start", call_sid, profile_name=form.first("CallerName") or None,
                      machine=answered_by.startswith(("machine", "fax")))
        flow = request.query.get("flow") if not inbound_dir else None
        if flow:
            start[0].flow_id = flow
            start[0].start_ref = request.query.get("o") or None
        return start

    # ---- outbound ---------------------------------------------------------------------------

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> Rendered:
        settings = ctx.settings
        base = ctx.public_url or self.public_url
        # the runtime's nonce for this turn (ReplyContext.step): a re-rendered duplicate gets the same
        # action URLs, so its TwiML is byte-identical; a fresh one only when rendering without a turn
        step = ctx.step or _step()
        voice = getattr(settings, "voice", None) or "Polly.Joanna"
        flow_language = getattr(settings, "language", None) or "en-US"
        verbs: list[str] = []

        def say(text: str, message: Outbound | None = None) -> str:
            return element(
                "Say", text, voice=(message and message.voice) or voice,
                language=(message and message.language) or flow_language,
            )

        record_call = bool(getattr(settings, "recording", False) and ctx.event_kind == "start")
        callback = {"s": quote(ctx.session_id, safe=":")} if ctx.session_id else {}  # callbacks carry no From/To
        if record_call:  # the notice first, then the recording starts
            notice = getattr(settings, "consent_notice", "") or "This call may be recorded."
            # the engine says it first (in the caller's language when that is not the flow's default)
            said = [m.kind == "say" and (m.text == notice or (m.language or flow_language) != flow_language)
                    for m in messages]
            if said and said[0]:
                verbs.append(say(messages[0].text, messages[0]))
                messages = messages[1:]
            elif not any(said):
                verbs.append(say(notice))
            verbs.append(self._start_recording(base, callback))
        for message in messages:
            if message.kind == "notify":
                continue  # a message to staff, sent by the runtime; not said to the caller
            if message.kind == "say":
                if message.text:
                    verbs.append(say(message.text, message))
                if message.media_url:
                    verbs.append(element("Play", message.media_url))
            elif message.kind == "ask":
                verbs.append(self._gather(message, base, say, message.language or flow_language, step))
            elif message.kind == "record":
                if message.text:
                    verbs.append(say(message.text, message))
                transcribe = bool(getattr(settings, "transcription", False))
                verbs.append(element(
                    "Record",
                    action=action_url(base, f"{BASE}/record", step=step),
                    maxLength=int(message.max_seconds or 120),
                    recordingStatusCallback=action_url(base, f"{BASE}/recording", **callback),
                    transcribe=True if transcribe else None,
                    transcribeCallback=action_url(base, f"{BASE}/transcription", **callback) if transcribe else None,
                ))
            elif message.kind == "handoff":
                if message.text:
                    verbs.append(say(message.text, message))
                if message.target:
                    warm = message.whisper and bool(callback)
                    number = element("Number", message.target, url=action_url(
                        base, f"{BASE}/whisper", **callback, step=step) if warm else None)
                    verbs.append(element(
                        "Dial", children=[number],
                        action=action_url(base, f"{BASE}/dial", step=step, **({"w": "1"} if warm else {})),
                        timeout=int(message.max_seconds or DIAL_TIMEOUT_SECONDS),
                    ))
            elif message.kind == "end":
                if message.text:
                    verbs.append(say(message.text, message))
                verbs.append(element("Hangup"))
        if ctx.whisper == "ask" and messages:  # to the person answering a transfer: accept with 1
            accept = action_url(base, f"{BASE}/whisper-accept", **callback, step=step)
            verbs = [element("Gather", children=[say(m.text, m) for m in messages if m.text], action=accept,
                             actionOnEmptyResult=True, input="dtmf", method="POST", numDigits=1,
                             timeout=WHISPER_SECONDS)]
        if ctx.continuation is not None:  # the turn goes on: come back for its answer
            wait = ctx.continuation.partition(":")[2]
            url = action_url(base, f"{BASE}/continue", **({"wait": wait} if wait else {}),
                             n=str(ctx.continuation_round or 1))
            verbs.append(element("Redirect", url, method="POST"))
        return Rendered(body=response(verbs), media_type=TWIML_MEDIA_TYPE)

    @staticmethod
    def _start_recording(base: str, callback: dict[str, str]) -> str:
        """`<Start><Recording>`: the rest of the call is recorded (both legs); Twilio posts the
        finished recording to `/call-recording`."""
        return element("Start", children=[element(
            "Recording", recordingStatusCallback=action_url(base, f"{BASE}/call-recording", **callback),
            recordingStatusCallbackEvent="completed", recordingStatusCallbackMethod="POST",
        )])

    def _gather(self, message: Outbound, base: str, say: Any, language: str, step: str) -> str:
        shown = present(message, self.capabilities)
        choices = message.choices
        hints: dict[str, None] = {}  # ordered, each phrase once (a list's `in` made this quadratic)
        for choice in choices:
            for phrase in (choice.label, *choice.match):
                if phrase and "," not in phrase:
                    hints[phrase] = None
        digits = [c.dtmf or str(i + 1) for i, c in enumerate(choices)]
        single_digit = bool(choices) and all(len(d) == 1 for d in digits)
        numeric = message.input in ("number", "phone")
        return element(
            "Gather",
            children=[say(shown.text, message)] if shown.text else [],
            action=action_url(base, f"{BASE}/gather", step=step),
            actionOnEmptyResult=True,
            hints=", ".join(itertools.islice(hints, _MAX_HINTS)) or None,
            input="speech dtmf",
            language=language,
            method="POST",
            numDigits=1 if single_digit else None,
            finishOnKey="#" if numeric else None,
            speechTimeout="auto",
        )

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        raise SendError(
            f"channel {self.name}: a call cannot be messaged proactively; "
            "send through twilio_sms (on_hangup: text_back) instead"
        )


def whisper_key(session_id: str, step: str) -> str:
    """The status key of one warm transfer's acceptance (no phone number in it)."""
    return f"whisper:{hashlib.blake2b(session_id.encode(), digest_size=8).hexdigest()}:{step}"


def _float(value: str) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
