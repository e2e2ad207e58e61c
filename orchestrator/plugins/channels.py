"""The channel adapter base class and its registry. The engine imports no channel.

A channel adapter is a class derived from `ChannelAdapter`, in `channels/` or in another
installed package advertising it through the `orchestrator.channels` entry-point group; the
server builds it with `from_settings(config)` from its own typed settings (see
`orchestrator.plugins.base`). Every hook has a default but `verify` and `parse`:

- `verify(request)`: check the provider's signature; raise SignatureError (-> 403).
  Verification is not optional: the default refuses every request.
- `parse(request)`: turn a verified request into `Inbound` items (a batch may hold several);
  raise BadRequest (-> 400) for a malformed body.
- `render(messages, ctx)`: the synchronous HTTP answer to the provider (TwiML, JSON); default:
  an empty 200 (the replies go out through `send`).
- `send(to, messages, ctx)`: proactive messages (outbox, reminders, outbound starts),
  through the provider's REST client; returns provider message ids; raises SendError on
  failure. Default: a channel that cannot send (SendError, not retryable).
- `handshake(request)`: a GET on one of its routes (Meta's subscription check); default 405.
- `routes`: the `(method, path)` pairs the server mounts; default `POST /webhooks/<name>`.
- `close()` (async): release what `send` keeps open; the runtime calls it when it closes.
- `signs_url`: the signature covers the URL called (Twilio): the server then needs
  ORCHESTRATOR_PUBLIC_URL to rebuild it.
- `capabilities`: what the channel can show; rich output degrades from them in one place
  (`orchestrator.engine.render`), never through `if channel == ...` in the engine. The idiom
  is open: `voice`, `sms` and `whatsapp` get their own wording, any other idiom (`chat`,
  `webchat`...) the text one. `outbound` says whether the business can start a conversation
  on it (the admin API's outbound start answers 422 on a channel that cannot).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import msgspec

from orchestrator.errors import ConfigError, SendError, SignatureError
from orchestrator.model import Event, Outbound
from orchestrator.plugins.base import PREFER_ENV, Plugin, Registry, discover, parse_prefer

log = logging.getLogger("orchestrator.plugins.channels")
ENTRY_POINT_GROUP = "orchestrator.channels"


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    idiom: str = "chat"  # open: "voice", "sms", "whatsapp" have their own wording; any other is text
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


InboundKind = Literal["event", "status", "opt_out", "opt_in", "help", "ignore", "continue", "whisper"]


class Inbound(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One parsed item of a webhook.

    - event: a conversation event for the engine
    - status: a delivery status of an outbound message (`message_id`, `status`, `error_code`)
    - opt_out / opt_in / help: STOP / START / HELP handling, before any turn
    - ignore: acknowledged, nothing to do (e.g. a reaction removed)
    - continue: voice, a `<Redirect>` after a filler: answer the turn `message_id` names
    - whisper: voice warm transfer, the person answering (`status` None: what they hear; "accepted" /
      "declined": their key press), `message_id` the transfer's key
    """

    kind: InboundKind = "event"
    address: Address | None = None
    event: Event | None = None
    message_id: str | None = None
    status: str | None = None
    error_code: str | None = None
    route_key: str | None = None  # picks the flow (the number called, phone-number id)
    send_key: str | None = None  # status: the part key (`part_key`) the send carried, when it comes back
    flow_id: str | None = None  # event: start this flow (an outbound call placed for it), not the routed one
    start_ref: str | None = None  # event: the placed call's reference (its start's vars are kept under it)
    wait_round: int = 0  # continue: how many times this wait was redirected (message_id: the awaited turn's id)


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
    # voice: the turn is still running; say the messages, then <Redirect> to the continuation
    # that waits for the answer of this provider id (`continuation_round`-th wait)
    continuation: str | None = None
    continuation_round: int = 0
    whisper: str | None = None  # voice warm transfer: "ask" (say, then press 1) | "accepted" (connect)


class ChannelAdapter(Plugin):
    """Base of every channel adapter; see the module docstring for each hook."""

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities] = Capabilities()
    signs_url: ClassVar[bool] = False

    @property
    def routes(self) -> tuple[tuple[str, str], ...]:
        return (("POST", f"/webhooks/{self.name}"),)

    def verify(self, request: InboundRequest) -> None:
        raise SignatureError(f"{request.path}: channel {self.name!r} does not verify its requests (no verify())")

    def parse(self, request: InboundRequest) -> list[Inbound]:
        raise NotImplementedError(f"channel {self.name!r} has no parse(request)")

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> Rendered:
        return Rendered(body=b"")

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        raise SendError(f"channel {self.name!r} cannot send proactive messages", retryable=False,
                        code="cannot_send")

    def handshake(self, request: InboundRequest) -> Rendered:
        return Rendered(body=b"method not allowed", status_code=405)

    async def close(self) -> None:
        return None


def part_key(idempotency_key: str | None, index: int) -> str | None:
    """The idempotency key of part `index` of an outbox send (None when the send has no key)."""
    return f"{idempotency_key}#{index}" if idempotency_key else None


class ChannelRegistry(Registry[ChannelAdapter]):
    """Channel adapters by name; `register` refuses a duplicate."""

    kind = "channel"


def declared_capabilities() -> dict[str, Capabilities]:
    """What every installed channel declares it can show, by entry-point name, read from the
    adapter classes without building them (no credentials needed): the validator's view."""
    found: dict[str, Capabilities] = {}
    try:
        installed = discover(ENTRY_POINT_GROUP, parse_prefer(os.environ.get(PREFER_ENV)))
    except ConfigError as exc:  # two plugins with one name: `serve` refuses; the validator goes on
        log.warning("%s", exc)
        return found
    for item in installed:
        caps = getattr(item.factory, "capabilities", None)
        if isinstance(caps, Capabilities):
            found[item.name] = caps
    return found
