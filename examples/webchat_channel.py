"""A custom channel in one module: a JSON web chat for a site's chat bubble.

The page's backend POSTs each visitor message, signed with a shared secret:

    POST /webhooks/webchat
    X-Webchat-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>
    {"visitor": "v-42", "id": "msg-1", "text": "hi"}          # or "choice": "book"

and gets the bot's answer in the response:

    {"messages": [{"text": "Hi!"}, {"text": "Book or hours?",
                   "buttons": [{"id": "book", "label": "Book a visit"}, ...]}],
     "ended": false}

Plugging it in touches no engine code: register it, then build the runtime and the app.

    registry = build_channels(settings)              # the built-in channels, if configured
    registry.register(WebChatChannel(secret="..."))  # this one
    runtime = await Runtime.create(settings, connectors, registry)
    app = create_app(settings, runtime=runtime)

(or advertise it to every deployment through the `orchestrator.plugins.channels` entry point group).
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
from orchestrator.plugins.channels import Address, Capabilities, Inbound, InboundRequest, Rendered, ReplyContext

BUSINESS = "webchat"


class WebChatChannel:
    name = "webchat"
    capabilities = Capabilities(idiom="chat", max_buttons=6, button_title_len=40, max_list_rows=0, sync_reply=True)
    routes = (("POST", "/webhooks/webchat"),)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigError("WEBCHAT_SECRET is not set: the web chat cannot verify its requests without it")
        self._secret = secret.encode()
        self.mailbox: dict[str, list[dict[str, Any]]] = {}  # proactive messages, fetched by the page

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
            event = Event(kind="choice", channel="chat", choice_id=str(data["choice"]), provider_id=message_id)
        else:
            event = Event(kind="text", channel="chat", text=str(data.get("text", "")), provider_id=message_id)
        return [Inbound(address=Address(business=BUSINESS, contact=visitor), event=event, route_key=BUSINESS)]

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
