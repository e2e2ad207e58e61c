"""Twilio Messaging: SMS, MMS and WhatsApp-over-Twilio through one webhook.

Routes (POST, signed with X-Twilio-Signature):
- `/webhooks/twilio/sms`         an inbound message -> text | media | location | choice,
                                 or opt_out / opt_in / help for the carrier keywords
- `/webhooks/twilio/sms/status`  delivery status of a message we sent -> status

Replies are TwiML `<Message>`s: numbered menus (from `orchestrator.engine.render.present`), each
message kept within the flow's `sms_segment_budget` segments, split at sentence
boundaries. `whatsapp:` addresses keep the prefix on the business side of the `Address`
so the contact stays an E.164 number and `send` knows which channel to use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from orchestrator import metrics
from orchestrator.engine.keywords import keyword_kind
from orchestrator.engine.render import present
from orchestrator.errors import BadRequest, ConfigError
from orchestrator.model import Event, Location, Media, Outbound
from orchestrator.plugins.channels import (
    Address,
    Capabilities,
    ChannelAdapter,
    Inbound,
    InboundRequest,
    Rendered,
    ReplyContext,
    part_key,
)

from . import sms_segments
from ._twilio import (
    TWIML_MEDIA_TYPE,
    FormParams,
    TwilioSettings,
    TwilioSignatureVerifier,
    action_url,
    element,
    form_of,
    outcome_unknown,
    response,
    rest_client,
    send_error_from,
    twilio_configured,
)

log = logging.getLogger("channels.twilio_sms")
BASE = "/webhooks/twilio/sms"
WA_PREFIX = "whatsapp:"
_OPT_OUT_TYPES = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}
DEFAULT_SEGMENT_BUDGET = 3
UNREADABLE = "\ufffd"  # what the form decoder gives for a percent-encoding that is not UTF-8


class TwilioSmsChannel(ChannelAdapter):
    name = "twilio_sms"
    capabilities = Capabilities(idiom="sms", segment_budget=DEFAULT_SEGMENT_BUDGET, max_text_len=1600, sync_reply=True,
                                outbound=True)
    signs_url = True  # X-Twilio-Signature covers the URL called: needs ORCHESTRATOR_PUBLIC_URL
    routes: tuple[tuple[str, str], ...] = (("POST", BASE), ("POST", f"{BASE}/status"))

    settings_type = TwilioSettings
    env_prefix = "TWILIO_"

    def __init__(
        self,
        *,
        auth_token: str | None = None,
        account_sid: str | None = None,
        from_number: str | None = None,
        api_base: str | None = None,
        public_url: str | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._auth_token = auth_token or ""
        self._verifier = TwilioSignatureVerifier(self._auth_token)
        self.account_sid = account_sid or ""
        if not self.account_sid:
            raise ConfigError("TWILIO_ACCOUNT_SID is not set: the SMS channel cannot send (text-back, reminders)")
        self.from_number = from_number or ""
        self.api_base = api_base or None
        self.public_url = public_url or ""
        self.timeout_seconds = timeout_seconds
        self._client: Any = None

    @classmethod
    def from_settings(cls, config: TwilioSettings) -> TwilioSmsChannel:
        return cls(auth_token=config.auth_token, account_sid=config.account_sid, from_number=config.from_number,
                   api_base=config.api_base, public_url=config.public_url)

    @classmethod
    def is_configured(cls, config: TwilioSettings) -> bool:
        return twilio_configured(config)

    # ---- inbound ----------------------------------------------------------------------------

    def verify(self, request: InboundRequest) -> None:
        self._verifier.verify(request)

    def parse(self, request: InboundRequest) -> list[Inbound]:
        form = form_of(request)
        sid = form.first("MessageSid") or form.first("SmsSid")
        if not sid:
            raise BadRequest(f"{request.path}: no MessageSid in the form; not a Twilio Messaging webhook")
        sender, receiver = form.first("From"), form.first("To")
        status = form.first("MessageStatus")
        if request.path.rstrip("/").endswith("/status") or (status and "Body" not in form):
            # a delivery status of a message we sent: From is us, To the contact
            return [Inbound(
                kind="status", address=_address(business=sender, contact=receiver), message_id=sid,
                status=status or form.first("SmsStatus"), error_code=form.first("ErrorCode") or None,
                route_key=_bare(sender), send_key=request.query.get("k") or None,
            )]
        address = _address(business=receiver, contact=sender)
        route_key = _bare(receiver)
        body = form.first("Body")
        opt = _OPT_OUT_TYPES.get(form.first("OptOutType").upper()) or keyword_kind(body)
        if opt:
            return [Inbound(kind=opt, address=address, message_id=sid, route_key=route_key)]  # type: ignore[arg-type]
        return [Inbound(kind="event", address=address, event=_event(form, sid), route_key=route_key)]

    # ---- outbound ---------------------------------------------------------------------------

    def texts(
        self, messages: list[Outbound], ctx: ReplyContext, *, staff: bool = False
    ) -> list[tuple[str, str | None]]:
        """The turn's messages as SMS bodies (+ one media URL), each within the segment budget.

        Consecutive texts are joined into one body (one SMS thread entry, in order) and split
        again only where the budget requires."""
        budget = int(getattr(ctx.settings, "sms_segment_budget", 0) or DEFAULT_SEGMENT_BUDGET)
        out: list[tuple[str, str | None]] = []
        pending: list[str] = []

        def flush() -> None:
            if pending:
                out.extend((part, None) for part in sms_segments.split_to_budget("\n".join(pending), budget))
                pending.clear()

        for message in messages:
            if (message.kind == "notify") != staff:
                continue  # staff notifications go out by send(), never in the contact's reply
            text = present(message, self.capabilities).text.strip()
            if message.media_url:
                flush()
                parts = sms_segments.split_to_budget(text, budget) or [""]
                out.append((parts[0], message.media_url))
                out.extend((part, None) for part in parts[1:])
            elif text:
                pending.append(text)
        flush()
        return out

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> Rendered:
        verbs = []
        for text, media in self.texts(messages, ctx):
            if media:
                verbs.append(element("Message", children=[element("Body", text), element("Media", media)]))
            else:
                verbs.append(element("Message", text))
        return Rendered(body=response(verbs), media_type=TWIML_MEDIA_TYPE)

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        staff = bool(messages) and all(m.kind == "notify" for m in messages)
        bodies = self.texts(messages, ctx, staff=staff)
        if len(bodies) <= ctx.sent_parts:
            return []
        return await asyncio.to_thread(self._send_sync, to, bodies, ctx)

    def _send_sync(self, to: Address, bodies: list[tuple[str, str | None]], ctx: ReplyContext) -> list[str]:
        """Parts `ctx.sent_parts`.. in order; the sids of those accepted. Twilio takes no idempotency
        key: each part's key rides in its StatusCallback URL (`?k=`, back with its statuses), and a
        part whose earlier outcome is unknown is looked for among the messages Twilio lists."""
        client = self._rest()
        business = to.business if to.business and not to.business.isdigit() else self.from_number
        if not business:
            raise ConfigError("TWILIO_FROM_NUMBER is not set: no number to send SMS from")
        wa = business.startswith(WA_PREFIX)
        recipient = f"{WA_PREFIX}{_bare(to.contact)}" if wa else to.contact
        base = ctx.public_url or self.public_url
        callback = action_url(base, f"{BASE}/status") if base else None
        sids: list[str] = []
        listed: list[Any] | None = None
        reconciling = ctx.reconcile_since is not None
        for index in range(ctx.sent_parts, len(bodies)):
            body, media = bodies[index]
            where = f"{self.name} send #{index + 1} of {len(bodies)}"
            if reconciling:
                try:
                    if listed is None:
                        listed = _sent_since(client, recipient, business, ctx.reconcile_since or 0.0)
                except Exception as exc:
                    error = send_error_from(exc, f"{where}: looking for an earlier attempt")
                    error.accepted, error.unknown = sids, True  # still unknown: look again next time
                    raise error from exc
                found = _take(listed, body)
                if found is not None:
                    sids.append(found)
                    continue
                reconciling = False  # this part never reached Twilio, so no later one did
            kwargs: dict[str, Any] = {"to": recipient, "from_": business, "body": body}
            if media:
                kwargs["media_url"] = [media]
            key = part_key(ctx.idempotency_key, index)
            if callback:
                kwargs["status_callback"] = f"{callback}?k={quote(key, safe='')}" if key else callback
            try:
                sids.append(client.messages.create(**kwargs).sid)
            except Exception as exc:
                error = send_error_from(exc, where)
                error.accepted, error.unknown = sids, outcome_unknown(exc)
                raise error from exc
        return sids

    def _rest(self) -> Any:
        if self._client is None:
            self._client = rest_client(self.account_sid, self._auth_token, self.api_base, self.timeout_seconds)
        return self._client


RECONCILE_LOOKBACK = 50  # the contact's most recent messages searched for an attempt of unknown outcome
_CLOCK_SKEW_SECONDS = 120.0  # Twilio's clock against ours


def _sent_since(client: Any, recipient: str, business: str, since: float) -> list[Any]:
    """Our messages to `recipient` created since `since` (oldest first). Listed by To and From
    only: DateSent filters by day and a message still queued has none."""
    recent = client.messages.list(to=recipient, from_=business, limit=RECONCILE_LOOKBACK)
    oldest = since - _CLOCK_SKEW_SECONDS
    found = [m for m in recent if m.date_created is None or m.date_created.timestamp() >= oldest]
    return sorted(found, key=lambda m: m.date_created.timestamp() if m.date_created else 0.0)


def _take(listed: list[Any], body: str) -> str | None:
    """The sid of the oldest listed message with this body (removed: one message matches one part).
    A trial account prefixes bodies, hence the suffix match."""
    for i, message in enumerate(listed):
        text = message.body or ""
        if text == body or text.endswith(body):
            return str(listed.pop(i).sid)
    return None


def _bare(address: str) -> str:
    return address[len(WA_PREFIX):] if address.startswith(WA_PREFIX) else address


def _address(*, business: str, contact: str) -> Address:
    """WhatsApp-over-Twilio keeps `whatsapp:` on the business side only."""
    if contact.startswith(WA_PREFIX) and not business.startswith(WA_PREFIX):
        business = WA_PREFIX + business
    return Address(business=business, contact=_bare(contact))


def _event(form: FormParams, sid: str) -> Event:
    channel = "sms"  # WhatsApp-over-Twilio too: replies are TwiML <Message>s with numbered menus
    body = form.first("Body").strip()
    name = form.first("ProfileName") or None
    payload = form.first("ButtonPayload") or form.first("ListId")
    if payload:
        return Event(kind="choice", channel=channel, choice_id=payload, text=body or None,
                     provider_id=sid, profile_name=name)
    lat, lon = form.first("Latitude"), form.first("Longitude")
    if lat and lon:
        try:
            location = Location(latitude=float(lat), longitude=float(lon),
                                name=form.first("Label") or None, address=form.first("Address") or None)
        except ValueError:
            raise BadRequest(f"location {lat!r},{lon!r} is not two numbers") from None
        return Event(kind="location", channel=channel, location=location, provider_id=sid, profile_name=name)
    media: list[Media] = []
    try:
        count = int(form.first("NumMedia") or 0)
    except ValueError:
        raise BadRequest(f"NumMedia {form.first('NumMedia')!r} is not a number") from None
    for i in range(min(count, 10)):
        url = form.first(f"MediaUrl{i}")
        if url:
            media.append(Media(url=url, content_type=form.first(f"MediaContentType{i}") or None))
    if UNREADABLE in body:
        # bytes that were not UTF-8 (the form decoder put U+FFFD in their place): asked again,
        # never saved as the contact's answer
        metrics.labelled(metrics.WEBHOOK_ITEMS_MALFORMED, "twilio_sms", "unreadable").inc()
        log.warning("SMS Body is not UTF-8 text; answered as an unreadable reply")
        return Event(kind="media", channel=channel, provider_id=sid, profile_name=name,
                     media=[*media, Media(content_type="application/x-twilio-unreadable")])
    if body:
        return Event(kind="text", channel=channel, text=body, media=media, provider_id=sid, profile_name=name)
    return Event(kind="media", channel=channel, media=media, provider_id=sid, profile_name=name)
