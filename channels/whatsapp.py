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

from orchestrator import metrics
from orchestrator.engine.keywords import keyword_kind
from orchestrator.engine.render import present, shorten, words_of
from orchestrator.errors import BadRequest, ConfigError, SendError, SignatureError
from orchestrator.model import Event, Location, Media, Outbound
from orchestrator.plugins.base import PluginSettings, Secret
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

from ._http import LeanHttp

log = logging.getLogger("channels.whatsapp")
PATH = "/webhooks/whatsapp"
GRAPH_BASE = "https://graph.facebook.com"
GRAPH_VERSION = "v26.0"  # each Graph version lives >= 2 years; heyoo's v14/v15 are long gone
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
BODY_LIMIT = 1024  # interactive body


class WhatsAppSettings(PluginSettings):
    """Meta's WhatsApp Cloud API app (WHATSAPP_*)."""

    token: Secret | None = None
    phone_number_id: str | None = None
    app_secret: Secret | None = None
    verify_token: Secret | None = None
    api_base: str | None = None  # a fake server in tests; unset: graph.facebook.com


class WhatsAppChannel(ChannelAdapter):
    name = "whatsapp"
    capabilities = Capabilities(
        idiom="whatsapp", max_buttons=3, button_title_len=20, max_list_rows=10, row_title_len=24,
        max_text_len=4096, sync_reply=False, outbound=True,
    )
    routes: tuple[tuple[str, str], ...] = (("GET", PATH), ("POST", PATH))

    settings_type = WhatsAppSettings
    env_prefix = "WHATSAPP_"

    def __init__(
        self,
        *,
        app_secret: str | None = None,
        verify_token: str | None = None,
        token: str | None = None,
        phone_number_id: str | None = None,
        api_base: str | None = None,
        graph_version: str = GRAPH_VERSION,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._app_secret = (app_secret or "").encode()
        self._verify_token = verify_token or ""
        self._token = token or ""
        self.phone_number_id = phone_number_id or ""
        for key, value, need in (
            ("WHATSAPP_APP_SECRET", self._app_secret, "verify Meta's webhook signatures"),
            ("WHATSAPP_VERIFY_TOKEN", self._verify_token, "answer Meta's subscription handshake"),
            ("WHATSAPP_TOKEN", self._token, "send replies (they all go through the Graph API)"),
        ):
            if not value:
                raise ConfigError(f"{key} is not set: the WhatsApp channel cannot {need} without it")
        self.api_base = (api_base or GRAPH_BASE).rstrip("/")
        self.graph_version = graph_version
        self.timeout_seconds = timeout_seconds
        self._clients: dict[str, Any] = {}
        self._http = LeanHttp(timeout_seconds)
        self._proxied: dict[str, bool] = {}  # Graph URL -> whether requests would use a proxy for it
        self._requests: _GraphHttp | None = None  # the proxied path: requests in a thread

    @classmethod
    def is_configured(cls, config: WhatsAppSettings) -> bool:
        return bool(config.token or config.app_secret or config.verify_token or config.phone_number_id)

    @classmethod
    def from_settings(cls, config: WhatsAppSettings) -> WhatsAppChannel:
        return cls(app_secret=config.app_secret, verify_token=config.verify_token, token=config.token,
                   phone_number_id=config.phone_number_id, api_base=config.api_base)

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
        """Every message and status of the batch, each on its own: only a body that is not a
        WhatsApp webhook at all is a BadRequest (400). A message that names no contact is
        logged, counted and skipped; one whose content is unreadable becomes an unreadable
        answer the engine asks again about (see `_message_item`), so the rest of the batch
        goes on and Meta's retries never replay a batch that can never pass."""
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
                business = _ident(_get(value, "metadata", "phone_number_id")) or self.phone_number_id
                names: dict[str, str] = {}
                for c in _dicts(value.get("contacts")):
                    name = _clean(_get(c, "profile", "name"))
                    for key in ("wa_id", "user_id"):
                        if (ident := _ident(c.get(key))) and name:
                            names[ident] = name
                messages = value.get("messages")
                for message in messages if isinstance(messages, list) else ():
                    item = _message_item(message, business, names)
                    if item is not None:
                        items.append(item)
                statuses = value.get("statuses")
                for status in statuses if isinstance(statuses, list) else ():
                    item = _status(status, business)
                    if item is None:
                        _skipped("status", "a status without an 'id' string")
                    else:
                        items.append(item)
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
            # a `message.send` may name its own template; else the flow's proactive one
            template = next((m.template for m in messages if m.template), None) or getattr(
                ctx.settings, "whatsapp_template", None)
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
                words = words_of(message)  # the list's button and heading in the message's language
                rows = []
                for c in shown.choices:
                    row = {"id": c.id[:200], "title": c.label}
                    if c.description:
                        row["description"] = shorten(c.description, 72)
                    rows.append(row)
                interactive = {
                    "type": "list",
                    "body": {"text": _body(shown.text)},
                    "action": {"button": shorten(words["list_button"], 20),
                               "sections": [{"title": shorten(words["list_section"], 24), "rows": rows}]},
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


def _contact(raw: str) -> str:
    return f"+{raw}" if raw.isdigit() else raw


def _clean(value: Any) -> str | None:
    """`value` when it is a string that can be stored (UTF-8: no lone surrogate), else None."""
    if not isinstance(value, str):
        return None
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return value


def _ident(value: Any) -> str | None:
    """An id field (wa_id, BSUID, wamid, phone-number id): a non-empty clean string or an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _clean(value) or None


class _Unreadable(Exception):
    """A message that names its contact but whose content cannot be read (the reason)."""


def _text(value: Any, what: str) -> str:
    """A content field: a clean string ('' when absent), else _Unreadable naming the field."""
    if value is None:
        return ""
    text = _clean(value)
    if text is None:
        kind = "a string with a lone surrogate" if isinstance(value, str) else type(value).__name__
        raise _Unreadable(f"{what} is {kind}, not text")
    return text


def _part(message: dict[str, Any], key: str) -> dict[str, Any]:
    """The object under `key` ({} when absent), else _Unreadable."""
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Unreadable(f"'{key}' is {type(value).__name__}, not an object")
    return value


def _skipped(what: str, reason: str) -> None:
    """An item nobody can be answered for: logged (never its contact), counted, left out."""
    metrics.labelled(metrics.WEBHOOK_ITEMS_MALFORMED, "whatsapp", "skipped").inc()
    log.warning("whatsapp %s skipped: %s; the rest of the batch goes on", what, reason)


def _message_item(message: Any, business: str, names: dict[str, str]) -> Inbound | None:
    """One message -> an Inbound, or None when it names no contact or id (skipped). Unreadable
    content (a location without coordinates, an object where text belongs, a lone surrogate)
    is answered as an unreadable reply, so the contact is asked again instead of left unanswered."""
    if not isinstance(message, dict):
        _skipped("message", f"an item of 'messages' is {type(message).__name__}, not an object")
        return None
    sender = _ident(message.get("from")) or _ident(message.get("from_user_id"))
    wamid = _ident(message.get("id"))
    if not sender or not wamid:
        _skipped("message", "no 'from'/'from_user_id' or 'id' string")
        return None
    address = Address(business=business, contact=_contact(sender))
    kind = message.get("type")
    try:
        if kind is not None and not isinstance(kind, str):
            raise _Unreadable(f"'type' is {type(kind).__name__}, not a string")
        return _message(message, kind, wamid, address, business, names.get(sender))
    except Exception as exc:  # _Unreadable, or a shape nobody foresaw: the contact still gets an answer
        reason = str(exc) if isinstance(exc, _Unreadable) else f"{type(exc).__name__} reading the {kind!r} message"
        metrics.labelled(metrics.WEBHOOK_ITEMS_MALFORMED, "whatsapp", "unreadable").inc()
        # neither the sender nor the wamid is logged: a wamid carries the number (base64)
        log.warning("whatsapp %s message unreadable: %s; answered as an unreadable reply",
                    _clean(kind) or "?", reason)
        event = Event(kind="media", channel="whatsapp", provider_id=wamid,
                      media=[Media(content_type="application/x-whatsapp-unreadable")])
        return Inbound(kind="event", address=address, event=event, route_key=business)


def _message(message: dict[str, Any], kind: str | None, wamid: str, address: Address, business: str,
             name: str | None) -> Inbound:
    common: dict[str, Any] = {"channel": "whatsapp", "provider_id": wamid, "profile_name": name or None}

    def event(ev_kind: str, **fields: Any) -> Inbound:
        return Inbound(kind="event", address=address, event=Event(kind=ev_kind, **common, **fields),  # type: ignore[arg-type]
                       route_key=business)

    if kind == "text":
        said = _text(_part(message, "text").get("body"), "text.body")
        keyword = keyword_kind(said)  # STOP / START / HELP as on SMS: opt-out is honoured on WhatsApp too
        if keyword:
            return Inbound(kind=keyword, address=address, message_id=wamid, route_key=business)  # type: ignore[arg-type]
        return event("text", text=said)
    if kind == "interactive":
        interactive = _part(message, "interactive")
        reply = interactive.get("button_reply") or interactive.get("list_reply")
        if isinstance(reply, dict) and reply.get("id"):
            choice = _text(reply["id"], "the reply's id") if not isinstance(reply["id"], int) else str(reply["id"])
            return event("choice", choice_id=choice, text=_clean(reply.get("title")))
        nfm = interactive.get("nfm_reply")
        if isinstance(nfm, dict):
            return event("text", text=_text(nfm.get("body"), "nfm_reply.body")
                         or _text(nfm.get("response_json"), "nfm_reply.response_json"))
    if kind == "button":  # a template's quick-reply button
        button = _part(message, "button")
        return event("choice", choice_id=_text(button.get("payload"), "button.payload"),
                     text=_clean(button.get("text")))
    if kind == "location":
        loc = _part(message, "location")
        try:
            lat, lon = float(loc["latitude"]), float(loc["longitude"])
        except (KeyError, TypeError, ValueError):
            raise _Unreadable("a location without numeric latitude/longitude") from None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise _Unreadable("a location outside -90..90 / -180..180")
        location = Location(latitude=lat, longitude=lon, name=_clean(loc.get("name")),
                            address=_clean(loc.get("address")))
        return event("location", location=location)
    if kind in MEDIA_TYPES:
        body = _part(message, kind)
        caption = _text(body.get("caption"), f"{kind}.caption") or None
        media = Media(id=_ident(body.get("id")), content_type=_clean(body.get("mime_type")), caption=caption,
                      url=_clean(body.get("url")))
        return event("text" if caption else "media", text=caption, media=[media])
    if kind == "reaction":
        emoji = _text(_part(message, "reaction").get("emoji"), "reaction.emoji")
        if not emoji:
            return Inbound(kind="ignore", address=address, message_id=wamid, route_key=business)
        return event("reaction", text=emoji)
    if kind == "request_welcome":
        return event("start")
    if kind == "system":
        return Inbound(kind="ignore", address=address, message_id=wamid, route_key=business)
    # unsupported / unknown / contacts / order: an answer the flow cannot read; the engine
    # treats it like an unreadable reply and asks again politely
    return event("media", media=[Media(content_type=f"application/x-whatsapp-{kind or 'unknown'}")])


def _status(status: Any, business: str) -> Inbound | None:
    if not isinstance(status, dict) or not (message_id := _ident(status.get("id"))):
        return None
    errors = _dicts(status.get("errors"))
    code = _ident(errors[0].get("code")) if errors else None
    recipient = _ident(status.get("recipient_id")) or _ident(status.get("recipient_user_id"))
    return Inbound(
        kind="status",
        address=Address(business=business, contact=_contact(recipient)) if recipient else None,
        message_id=message_id,
        status=_clean(status.get("status")) or "",
        error_code=code,
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
