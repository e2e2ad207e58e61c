"""The channel adapter interface and its registry. The engine imports no channel.

A channel adapter is one module in `channels/` (or another installed package, through the
`orchestrator.plugins.channels` entry-point group) implementing `ChannelAdapter`:

- `verify(request)`: check the provider's signature; raise SignatureError (-> 403).
  Verification is not optional.
- `parse(request)`: turn a verified request into `Inbound` items (a batch may hold several);
  raise BadRequest (-> 400) for a malformed body.
- `render(reply)`: the synchronous HTTP answer to the provider (TwiML, or an empty 200).
- `send(to, messages, ctx)`: proactive messages (outbox, reminders, outbound starts),
  through the provider's REST client; returns provider message ids; raises on failure.
- `routes` (optional): the `(method, path)` pairs the server mounts for this adapter;
  default `(("POST", "/webhooks/<name>"),)`.
- `close()` (optional, async): release what `send` keeps open (connections); the runtime
  calls it when it closes.
- `capabilities`: what the channel can show; rich output degrades from them in one place
  (`orchestrator.engine.render`), never through `if channel == ...` in the engine. `outbound`
  says whether the business can start a conversation on it (the admin API's outbound
  start answers 422 on a channel that cannot).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from orchestrator.errors import RegistryError
from orchestrator.model import Event, Outbound

log = logging.getLogger("orchestrator.plugins.channels")
ENTRY_POINT_GROUP = "orchestrator.channels"


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    idiom: Literal["voice", "sms", "whatsapp", "chat"] = "chat"
    max_buttons: int = 0  # reply buttons (WhatsApp: 3)
    button_title_len: int = 20
    max_list_rows: int = 0  # list message rows (WhatsApp: 10)
    row_title_len: int = 24
    dtmf: bool = False  # keypad digits (voice)
    speech: bool = False  # spoken prompts and answers (voice)
    segment_budget: int | None = None  # SMS: longest reply in segments
    max_text_len: int = 4096
    sync_reply: bool = True  # answers in the webhook response (TwiML); False: sends via the outbox
    outbound: bool = True  # can start a conversation (POST /api/conversations); voice: no outbound calls yet


class Address(msgspec.Struct, frozen=True, kw_only=True):
    """Who a conversation is between: the business end (the number called or texted, or
    the WhatsApp phone-number id) and the contact (E.164). Not the channel."""

    business: str
    contact: str


InboundKind = Literal["event", "status", "opt_out", "opt_in", "help", "ignore"]


class Inbound(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One parsed item of a webhook.

    - event: a conversation event for the engine
    - status: a delivery status of an outbound message (`message_id`, `status`, `error_code`)
    - opt_out / opt_in / help: STOP / START / HELP handling, before any turn
    - ignore: acknowledged, nothing to do (e.g. a reaction removed)
    """

    kind: InboundKind = "event"
    address: Address | None = None
    event: Event | None = None
    message_id: str | None = None
    status: str | None = None
    error_code: str | None = None
    route_key: str | None = None  # picks the flow (the number called, phone-number id)
    send_key: str | None = None  # status: the part key (`part_key`) the send carried, when it comes back


class InboundRequest(msgspec.Struct, kw_only=True):
    """A raw webhook as the server received it; adapters never see the web framework."""

    method: str
    url: str  # the public URL the provider signed (rebuilt from ORCHESTRATOR_PUBLIC_URL)
    path: str
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes
    form: list[tuple[str, str]] | None = None  # parsed once with parse_qsl for form posts


class Rendered(msgspec.Struct, kw_only=True):
    body: bytes
    media_type: str = "text/plain"
    status_code: int = 200


class ReplyContext(msgspec.Struct, kw_only=True):
    """What an adapter needs to render or send: the flow's settings and the route URLs."""

    settings: Any = None  # schema.Settings of the conversation's flow
    public_url: str = ""
    session_id: str | None = None
    within_window: bool = True  # WhatsApp: inside the 24 h customer-service window
    event_kind: str | None = None  # the kind of event answered (voice: "start" -> consent notice first)
    idempotency_key: str | None = None  # outbox sends: the same key on every retry of one item
    # outbox sends: the item's provider calls ("parts") are numbered from 0, part i keyed
    # `part_key(idempotency_key, i)`. The first `sent_parts` were accepted already: skip them.
    sent_parts: int = 0
    # set when part `sent_parts` (and maybe later ones) may have been accepted by an attempt whose
    # outcome is unknown (a timeout, a reset, a sender killed mid-send) started at this time:
    # ask the provider (or `sent_lookup`) before sending it again
    reconcile_since: float | None = None
    # the bounded wait for an asynchronous confirmation (a status webhook carrying the part key) is
    # over: a part still unconfirmed was not accepted and is sent again
    reconcile_final: bool = False
    # async (part key) -> the provider id a status webhook reported for it, or None
    sent_lookup: Any = None
    step: str | None = None  # voice: the turn's action-URL nonce, the same when a duplicate is re-rendered


@runtime_checkable
class ChannelAdapter(Protocol):
    name: str
    capabilities: Capabilities

    def verify(self, request: InboundRequest) -> None: ...

    def parse(self, request: InboundRequest) -> list[Inbound]: ...

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> Rendered: ...

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]: ...


def part_key(idempotency_key: str | None, index: int) -> str | None:
    """The idempotency key of part `index` of an outbox send (None when the send has no key)."""
    return f"{idempotency_key}#{index}" if idempotency_key else None


class ChannelRegistry:
    """Explicit registry of adapters by name; `register` refuses a duplicate."""

    def __init__(self) -> None:
        self._adapters: dict[str, ChannelAdapter] = {}

    def register(self, adapter: ChannelAdapter, name: str | None = None) -> None:
        key = name or adapter.name
        if key in self._adapters:
            raise RegistryError(f"channel {key!r} is already registered; pick another name")
        self._adapters[key] = adapter

    def get(self, name: str) -> ChannelAdapter:
        try:
            return self._adapters[name]
        except KeyError:
            raise LookupError(
                f"unknown channel {name!r}; registered: {', '.join(sorted(self._adapters)) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._adapters)

    def load_entry_points(self, factory_kwargs: dict[str, Any] | None = None) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._adapters:
                continue
            try:
                adapter = ep.load()(**(factory_kwargs or {}))
            except Exception as exc:
                log.warning("channel entry point %s failed to load: %s", ep.name, exc)
                continue
            self.register(adapter, ep.name)


def declared_capabilities() -> dict[str, Capabilities]:
    """What every installed channel declares it can show, by entry-point name, read from the
    adapter classes without building them (no credentials needed): the validator's view."""
    found: dict[str, Capabilities] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            caps = getattr(ep.load(), "capabilities", None)
        except Exception as exc:  # a broken plugin is reported where it is built; skip it here
            log.debug("channel entry point %s failed to load: %s", ep.name, exc)
            continue
        if isinstance(caps, Capabilities):
            found[ep.name] = caps
    return found
