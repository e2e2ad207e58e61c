"""WhatsApp Cloud API (Meta): verify handshake, signed event batches, replies via heyoo.

Routes: `GET /webhooks/whatsapp` (the subscription handshake: `hub.mode=subscribe`,
`hub.verify_token`, `hub.challenge` -> the challenge, else 403) and `POST /webhooks/whatsapp`
(events, signed `X-Hub-Signature-256: sha256=<HMAC-SHA256(app secret, raw body)>`).

Every entry, change, message and status of a batch is parsed (heyoo's getters read only
the first). Replies are not part of the webhook answer (`sync_reply=False`): the runtime
puts them in the outbox and calls `send`. heyoo builds each Graph call (its payloads, URL and
headers, pointed at a current Graph version); the call itself goes out on the event loop
through `_http.LeanHttp` (keep-alive, a timeout, errors raised instead of returned), or
through `requests` in a thread when the environment routes the Graph URL through a proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import types
from typing import Any, NamedTuple

import msgspec

from orchestrator.channels import Address, Capabilities, Inbound, InboundRequest, Rendered, ReplyContext, part_key
from orchestrator.errors import BadRequest, ConfigError, SendError, SignatureError
from orchestrator.model import Event, Location, Media, Outbound
from orchestrator.render import present, shorten

from ._http import LeanHttp
from .twilio_sms import keyword_kind

log = logging.getLogger("channels.whatsapp")
PATH = "/webhooks/whatsapp"
GRAPH_BASE = "https://graph.facebook.com"
GRAPH_VERSION = "v26.0"  # each Graph version lives >= 2 years; heyoo's v14/v15 are long gone
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
BODY_LIMIT = 1024  # interactive body
LIST_BUTTON = "Choose"


class WhatsAppChannel:
    name = "whatsapp"
    capabilities = Capabilities(
        idiom="whatsapp", max_buttons=3, button_title_len=20, max_list_rows=10, row_title_len=24,
        max_text_len=4096, sync_reply=False, outbound=True,
    )
    routes: tuple[tuple[str, str], ...] = (("GET", PATH), ("POST", PATH))

    def __init__(
        self,
        settings: Any = None,
        *,
        app_secret: str | None = None,
        verify_token: str | None = None,
        token: str | None = None,
        phone_number_id: str | None = None,
        api_base: str | None = None,
        graph_version: str = GRAPH_VERSION,
        timeout_seconds: float = 5.0,
    ) -> None:
        def pick(value: str | None, field: str) -> str:
            return (value if value is not None else getattr(settings, field, None)) or ""

        self._app_secret = pick(app_secret, "whatsapp_app_secret").encode()
        self._verify_token = pick(verify_token, "whatsapp_verify_token")
        self._token = pick(token, "whatsapp_token")
        self.phone_number_id = pick(phone_number_id, "whatsapp_phone_number_id")
        for key, value, need in (
            ("WHATSAPP_APP_SECRET", self._app_secret, "verify Meta's webhook signatures"),
            ("WHATSAPP_VERIFY_TOKEN", self._verify_token, "answer Meta's subscription handshake"),
            ("WHATSAPP_TOKEN", self._token, "send replies (they all go through the Graph API)"),
        ):
            if not value:
                raise ConfigError(f"{key} is not set: the WhatsApp channel cannot {need} without it")
        self.api_base = (pick(api_base, "whatsapp_api_base") or GRAPH_BASE).rstrip("/")
        self.graph_version = graph_version
        self.timeout_seconds = timeout_seconds
        self._clients: dict[str, Any] = {}
        self._http = LeanHttp(timeout_seconds)
        self._proxied: dict[str, bool] = {}  # Graph URL -> whether requests would use a proxy for it
        self._requests: _GraphHttp | None = None  # the proxied path: requests in a thread

    @staticmethod
    def is_configured(settings: Any) -> bool:
        return any(getattr(settings, f, None) for f in (
            "whatsapp_token", "whatsapp_app_secret", "whatsapp_verify_token", "whatsapp_phone_number_id"))

    # ---- inbound ----------------------------------------------------------------------------

    def handshake(self, request: InboundRequest) -> Rendered:
        """GET: Meta's subscription check. 200 + the challenge, or SignatureError (403)."""
        q = request.query
        token = q.get("hub.verify_token", "")
        if q.get("hub.mode") != "subscribe" or not hmac.compare_digest(token.encode(), self._verify_token.encode()):
            raise SignatureError(f"{request.path}: verify handshake refused (mode or hub.verify_token wrong)")
        return Rendered(body=q.get("hub.challenge", "").encode(), media_type="text/plain")

    def verify(self, request: InboundRequest) -> None:
        header = request.headers.get("x-hub-signature-256", "")
        if not header.startswith("sha256="):
            raise SignatureError(f"{request.path}: no 'X-Hub-Signature-256: sha256=...' header; request refused")
        expected = hmac.new(self._app_secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(header[7:].strip().lower(), expected):
            raise SignatureError(
                f"{request.path}: X-Hub-Signature-256 does not match the body; check WHATSAPP_APP_SECRET"
            )

    def parse(self, request: InboundRequest) -> list[Inbound]:
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"{request.path}: body is not JSON ({exc})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
            raise BadRequest(f"{request.path}: no 'entry' list; not a WhatsApp Business webhook")
        items: list[Inbound] = []
        for entry in payload["entry"]:
            for change in _dicts(_get(entry, "changes")):
                value = change.get("value")
                if change.get("field", "messages") != "messages" or not isinstance(value, dict):
                    continue
                business = str(_get(value, "metadata", "phone_number_id") or self.phone_number_id)
                names = {
                    str(c.get("wa_id") or c.get("user_id")): _get(c, "profile", "name")
                    for c in _dicts(value.get("contacts"))
                }
                for message in _dicts(value.get("messages")):
                    items.append(_message(message, business, names))
                for status in _dicts(value.get("statuses")):
                    items.append(_status(status, business))
        return items

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> Rendered:
        return Rendered(body=b"", status_code=200)  # replies go out through send()

    # ---- outbound ---------------------------------------------------------------------------

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        """Parts `ctx.sent_parts`.. in order (the first failure stops the rest); their wamids. The
        Graph API takes no idempotency key: each part carries its key as `biz_opaque_callback_data`,
        which Meta echoes in the part's status webhooks. A part whose earlier outcome is unknown is
        sent again only once no status came back for it within the reconcile wait."""
        ids: list[str] = []
        calls = self._calls(to, messages, ctx)
        reconciling = ctx.reconcile_since is not None
        for index in range(ctx.sent_parts, len(calls)):
            call = calls[index]
            key = part_key(ctx.idempotency_key, index)
            if reconciling:
                found = await ctx.sent_lookup(key) if key and ctx.sent_lookup is not None else None
                if found is not None:
                    ids.append(found)
                    continue
                if not ctx.reconcile_final:
                    raise SendError(
                        f"{self.name}: part #{index + 1} of {len(calls)} went out with no answer; waiting for its "
                        "status webhook before sending it again", retryable=True, unknown=True, accepted=ids,
                        code="awaiting_status")
                reconciling = False  # no status came back: Meta did not take it, nor any later part
            if key:
                call.payload["biz_opaque_callback_data"] = key
            try:
                ids.append(_message_id(await self._post(call)))
            except SendError as exc:
                exc.accepted = ids
                raise
        return ids

    async def close(self) -> None:
        await self._http.close()

    async def _post(self, call: GraphCall) -> Any:
        """One Graph API call: its JSON answer, or SendError (graph_error for an HTTP error)."""
        proxied = self._proxied.get(call.url)
        if proxied is None:
            proxied = self._proxied[call.url] = LeanHttp.proxied(call.url)
        if proxied:
            if self._requests is None:
                self._requests = _GraphHttp(self.timeout_seconds)
            answer = await asyncio.to_thread(self._requests.post, call.url, headers=call.headers, json=call.payload)
            return answer.json()
        try:
            response = await self._http.request("POST", call.url, call.headers, msgspec.json.encode(call.payload))
        except (OSError, TimeoutError) as exc:
            # refused or unresolvable: nothing went out; anything else may have reached Meta
            unknown = not isinstance(exc, (ConnectionRefusedError, socket.gaierror))
            raise SendError(f"WhatsApp Graph API unreachable: {type(exc).__name__}", retryable=True,
                            unknown=unknown) from exc
        if response.status >= 400:
            raise graph_error(response.status, response.text())
        return msgspec.json.decode(response.body)

    def _calls(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[GraphCall]:
        """The Graph calls that send `messages`, built by heyoo (nothing is sent here)."""
        wa = self._client(to.business)
        recipient = to.contact.lstrip("+")
        calls: list[GraphCall] = []
        if not ctx.within_window:
            template = getattr(ctx.settings, "whatsapp_template", None)
            if not template:
                raise SendError(
                    f"{self.name}: {_mask(recipient)} is outside the 24 h window and the flow sets no "
                    "settings.whatsapp_template; add an approved template to reach them", retryable=False,
                    code="window_closed",
                )
            text = " ".join(m.text for m in messages if m.text)[:BODY_LIMIT]
            components = [{"type": "body", "parameters": [{"type": "text", "text": text}]}] if text else []
            lang = getattr(ctx.settings, "whatsapp_template_language", "en_US")
            return [wa.send_template(template, recipient, components, lang=lang)]
        for message in messages:
            if message.kind == "end" and not message.text:
                continue
            shown = present(message, self.capabilities)
            if shown.mode == "buttons":
                interactive = {
                    "type": "button",
                    "body": {"text": _body(shown.text)},
                    "action": {"buttons": [
                        {"type": "reply", "reply": {"id": c.id[:256], "title": c.label}} for c in shown.choices
                    ]},
                }
                calls.append(wa.send_reply_button(interactive, recipient))
            elif shown.mode == "list":
                rows = []
                for c in shown.choices:
                    row = {"id": c.id[:200], "title": c.label}
                    if c.description:
                        row["description"] = shorten(c.description, 72)
                    rows.append(row)
                interactive = {
                    "type": "list",
                    "body": {"text": _body(shown.text)},
                    "action": {"button": LIST_BUTTON, "sections": [{"title": shorten("Options", 24), "rows": rows}]},
                }
                calls.append(wa.send_reply_button(interactive, recipient))
            else:
                if shown.text:
                    calls.append(wa.send_message(shown.text[:4096], recipient, preview_url=False))
                if message.media_url:
                    calls.append(wa.send_image(message.media_url, recipient, link=True))
        return calls

    def _client(self, business: str) -> Any:
        phone_id = business if business and business.isdigit() else self.phone_number_id
        if not self._token:
            raise ConfigError("WHATSAPP_TOKEN is not set: the WhatsApp channel cannot send without it")
        if not phone_id:
            raise ConfigError("WHATSAPP_PHONE_NUMBER_ID is not set: no WhatsApp number to send from")
        client = self._clients.get(phone_id)
        if client is None:
            client = self._clients[phone_id] = heyoo_client(
                self._token, phone_id, self.api_base, self.graph_version, self.timeout_seconds, http=_CallRecorder()
            )
        return client


# ---- heyoo, made safe ------------------------------------------------------------------------


class GraphCall(NamedTuple):
    url: str
    headers: dict[str, str]
    payload: Any


class _CallRecorder:
    """Stands in for the `requests` module inside heyoo's methods on the send path: heyoo
    builds the call (URL, headers, payload) and gets it back as its answer's JSON, so each
    `wa.send_*` returns the GraphCall to make; `WhatsAppChannel._post` makes it."""

    def post(self, url: str, headers: dict[str, str] | None = None, json: Any = None, **kwargs: Any) -> _Recorded:
        return _Recorded(GraphCall(url, dict(headers or {}), json))


class _Recorded:
    status_code = 200

    def __init__(self, call: GraphCall) -> None:
        self._call = call

    def json(self) -> GraphCall:
        return self._call


class _GraphHttp:
    """Stands in for the `requests` module inside heyoo's methods: one pooled Session, a
    timeout on every call, and HTTP errors raised as SendError instead of returned."""

    def __init__(self, timeout: float) -> None:
        import requests

        self._requests = requests
        self._session = requests.Session()
        self._timeout = timeout

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        try:
            response = self._session.request(method, url, **kwargs)
        except self._requests.RequestException as exc:
            raise SendError(f"WhatsApp Graph API unreachable: {type(exc).__name__}", retryable=True) from exc
        if response.status_code >= 400:
            raise graph_error(response.status_code, response.text)
        return response

    def post(self, url: str, **kwargs: Any) -> Any:
        return self._call("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self._call("GET", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self._call("DELETE", url, **kwargs)


def graph_error(status: int, text: str) -> SendError:
    """A Graph error body `{"error": {message, type, code, ...}}` -> SendError."""
    code: str | None = None
    message = text[:200]
    try:
        error = json.loads(text).get("error") or {}
        code = str(error.get("code")) if error.get("code") is not None else None
        message = str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    retryable = status >= 500 or status == 429 or code in ("4", "80007", "130429", "131048", "131056")
    return SendError(f"WhatsApp Graph API answered {status} (code {code}): {message}",
                     retryable=retryable, status=status, code=code)


def heyoo_client(token: str, phone_number_id: str, api_base: str, graph_version: str, timeout: float,
                 *, http: Any = None) -> Any:
    """A `heyoo.WhatsApp` pointed at `api_base`/`graph_version`, whose HTTP calls go through
    `http` (default: a `_GraphHttp`: timeout, errors raised) and whose logging goes to the
    `heyoo` logger at debug level instead of the root logger. heyoo looks `requests` up in its
    module globals, so each method is rebound to a copy of those globals: heyoo itself is
    left untouched."""
    import heyoo

    wa = heyoo.WhatsApp(token=token, phone_number_id=phone_number_id)
    base = api_base.rstrip("/")
    if not base.rsplit("/", 1)[-1].startswith("v"):
        base = f"{base}/{graph_version}"
    wa.base_url = base
    wa.v15_base_url = base
    wa.url = f"{base}/{phone_number_id}/messages"
    namespace = dict(vars(heyoo))
    namespace["requests"] = http if http is not None else _GraphHttp(timeout)
    namespace["logging"] = _QuietLog(logging.getLogger("heyoo"))
    for name, func in vars(heyoo.WhatsApp).items():
        if isinstance(func, types.FunctionType) and name != "__init__":
            rebound = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
            rebound.__kwdefaults__ = func.__kwdefaults__
            setattr(wa, name, types.MethodType(rebound, wa))
    return wa


class _QuietLog:
    """heyoo logs every recipient at info (root logger); keep it at debug on its own logger."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger

    def info(self, msg: str, *args: Any) -> None:
        self._log.debug(msg, *args)

    error = warning = debug = info


# ---- parsing helpers ---------------------------------------------------------------------------


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _contact(raw: Any) -> str:
    text = str(raw or "")
    return f"+{text}" if text.isdigit() else text


def _message(message: dict[str, Any], business: str, names: dict[Any, Any]) -> Inbound:
    sender = message.get("from") or message.get("from_user_id")
    wamid = message.get("id")
    if not isinstance(sender, str | int) or not isinstance(wamid, str) or not sender or not wamid:
        raise BadRequest("WhatsApp message without a 'from'/'from_user_id' or 'id' string")
    sender = str(sender)
    address = Address(business=business, contact=_contact(sender))
    kind = message.get("type")
    name = names.get(sender)
    common: dict[str, Any] = {"channel": "whatsapp", "provider_id": wamid,
                              "profile_name": name if isinstance(name, str) and name else None}

    def event(ev_kind: str, **fields: Any) -> Inbound:
        return Inbound(kind="event", address=address, event=Event(kind=ev_kind, **common, **fields),  # type: ignore[arg-type]
                       route_key=business)

    if kind == "text":
        said = str(_get(message, "text", "body") or "")
        keyword = keyword_kind(said)  # STOP / START / HELP as on SMS: opt-out is honoured on WhatsApp too
        if keyword:
            return Inbound(kind=keyword, address=address, message_id=wamid, route_key=business)  # type: ignore[arg-type]
        return event("text", text=said)
    if kind == "interactive":
        reply = _get(message, "interactive", "button_reply") or _get(message, "interactive", "list_reply")
        if isinstance(reply, dict) and reply.get("id"):
            return event("choice", choice_id=str(reply["id"]), text=reply.get("title"))
        nfm = _get(message, "interactive", "nfm_reply")
        if isinstance(nfm, dict):
            return event("text", text=str(nfm.get("body") or nfm.get("response_json") or ""))
    if kind == "button":  # a template's quick-reply button
        return event("choice", choice_id=str(_get(message, "button", "payload") or ""),
                     text=_get(message, "button", "text"))
    if kind == "location":
        loc = message.get("location") or {}
        try:
            location = Location(latitude=float(loc["latitude"]), longitude=float(loc["longitude"]),
                                name=loc.get("name"), address=loc.get("address"))
        except (KeyError, TypeError, ValueError):
            raise BadRequest("WhatsApp location without numeric latitude/longitude") from None
        return event("location", location=location)
    if kind in MEDIA_TYPES:
        body = message.get(kind) or {}
        caption = body.get("caption")
        media = Media(id=body.get("id"), content_type=body.get("mime_type"), caption=caption, url=body.get("url"))
        return event("text" if caption else "media", text=caption, media=[media])
    if kind == "reaction":
        emoji = _get(message, "reaction", "emoji")
        if not emoji:
            return Inbound(kind="ignore", address=address, message_id=str(wamid), route_key=business)
        return event("reaction", text=str(emoji))
    if kind == "request_welcome":
        return event("start")
    if kind == "system":
        return Inbound(kind="ignore", address=address, message_id=str(wamid), route_key=business)
    # unsupported / unknown / contacts / order: an answer the flow cannot read; the engine
    # treats it like an unreadable reply and asks again politely
    return event("media", media=[Media(content_type=f"application/x-whatsapp-{kind or 'unknown'}")])


def _status(status: dict[str, Any], business: str) -> Inbound:
    errors = _dicts(status.get("errors"))
    code = errors[0].get("code") if errors else None
    recipient = status.get("recipient_id") or status.get("recipient_user_id")
    return Inbound(
        kind="status",
        address=Address(business=business, contact=_contact(recipient)) if recipient else None,
        message_id=str(status.get("id") or ""),
        status=str(status.get("status") or ""),
        error_code=str(code) if code is not None else None,
        route_key=business,
        send_key=str(status.get("biz_opaque_callback_data") or "") or None,
    )


def _message_id(result: Any) -> str:
    try:
        return str(result["messages"][0]["id"])
    except (KeyError, IndexError, TypeError):
        raise SendError(f"WhatsApp Graph API answered without a message id: {str(result)[:200]}") from None


def _body(text: str) -> str:
    text = text or "Please choose:"
    return text if len(text) <= BODY_LIMIT else text[: BODY_LIMIT - 1] + "…"


def _mask(recipient: str) -> str:
    return "*" * max(0, len(recipient) - 2) + recipient[-2:]
