"""A channel plugin: a JSON web chat for a site's chat bubble, installed as its own package.

The site's backend POSTs each visitor message, signed with a shared secret:

    POST /webhooks/webchat
    X-Webchat-Signature: sha256=<hex HMAC-SHA256(WEBCHAT_SECRET, raw body)>
    {"visitor": "v-42", "id": "msg-1", "text": "hi"}          # or "choice": "book"

and gets the bot's answer in the response:

    {"messages": [{"text": "Hi!"}, {"text": "Book or hours?",
                   "buttons": [{"id": "book", "label": "Book a visit"}, ...]}],
     "ended": false}

Installed (`pip install -e examples/webchat_channel`), its entry point makes `orchestrator
serve` mount it once WEBCHAT_SECRET is set; `orchestrator plugins` lists it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from orchestrator.engine.render import present
from orchestrator.errors import BadRequest, ConfigError, SignatureError
from orchestrator.model import Event, Outbound
from orchestrator.plugins.base import PluginSettings, Secret
from orchestrator.plugins.channels import (
    Address,
    Capabilities,
    ChannelAdapter,
    Inbound,
    InboundRequest,
    Rendered,
    ReplyContext,
)

IDIOM = "webchat"  # an idiom of its own: the engine words it as text


class WebChatSettings(PluginSettings):
    secret: Secret | None = None  # WEBCHAT_SECRET: shared with the site's backend; redacted from logs
    business: str = "webchat"  # WEBCHAT_BUSINESS: the route key (ORCHESTRATOR_ROUTES=webchat=<flow>)


class WebChatChannel(ChannelAdapter):
    name = "webchat"
    settings_type = WebChatSettings
    env_prefix = "WEBCHAT_"
    capabilities = Capabilities(idiom=IDIOM, max_buttons=6, button_title_len=40, sync_reply=True)
    routes = (("POST", "/webhooks/webchat"),)

    def __init__(self, secret: str, business: str = "webchat") -> None:
        if not secret:
            raise ConfigError("WEBCHAT_SECRET is not set: the web chat cannot verify its requests without it")
        self._secret = secret.encode()
        self.business = business
        self.mailbox: dict[str, list[dict[str, Any]]] = {}  # proactive messages, fetched by the page

    @classmethod
    def from_settings(cls, config: WebChatSettings) -> WebChatChannel:
        return cls(secret=config.secret or "", business=config.business)

    def verify(self, request: InboundRequest) -> None:
        header = request.headers.get("x-webchat-signature", "")
        expected = "sha256=" + hmac.new(self._secret, request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(header.encode(), expected.encode()):
            raise SignatureError(f"{request.path}: X-Webchat-Signature missing or wrong")

    def parse(self, request: InboundRequest) -> list[Inbound]:
        try:
            data = json.loads(request.body)
            visitor, message_id = str(data["visitor"]), str(data["id"])
        except (ValueError, KeyError, TypeError):
            raise BadRequest(f"{request.path}: expected JSON with 'visitor', 'id' and 'text' or 'choice'") from None
        if "choice" in data:
            event = Event(kind="choice", channel=IDIOM, choice_id=str(data["choice"]), provider_id=message_id)
        else:
            event = Event(kind="text", channel=IDIOM, text=str(data.get("text", "")), provider_id=message_id)
        address = Address(business=self.business, contact=visitor)
        return [Inbound(address=address, event=event, route_key=self.business)]

    def _json(self, messages: list[Outbound]) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for message in messages:
            if message.kind == "notify":
                continue
            shown = present(message, self.capabilities)
            item: dict[str, Any] = {"text": shown.text} if shown.text else {}
            if shown.mode == "buttons":
                item["buttons"] = [{"id": c.id, "label": c.label} for c in shown.choices]
            if item:
                out.append(item)
        return {"messages": out, "ended": any(m.kind == "end" for m in messages)}

    def render(self, messages: list[Outbound], ctx: ReplyContext) -> Rendered:
        return Rendered(body=json.dumps(self._json(messages)).encode(), media_type="application/json")

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        message_id = uuid.uuid4().hex
        self.mailbox.setdefault(to.contact, []).append({"id": message_id, **self._json(messages)})
        return [message_id]
