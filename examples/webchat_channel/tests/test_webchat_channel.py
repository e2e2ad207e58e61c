"""The custom web-chat channel driven through the real app: registered, not wired in."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from webchat_channel import WebChatChannel

from orchestrator.plugins.channels import ChannelRegistry, InboundRequest
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings
from orchestrator.testing.contract import ChannelContract
from orchestrator.testing.signing import hmac_request
from orchestrator.web.app import create_app

SECRET = "webchat-secret-123456"
FLOW = """\
flow: salon
title: Snip Salon
start: menu
states:
  menu:
    ask: "Hi! Haircut or colour?"
    choices:
      cut: {label: Haircut, match: [cut, haircut]}
      colour: {label: Colour, match: [colour, color]}
    save: service
    next: when
    on: {fail: sorry}
  when:
    ask: "Which day suits you?"
    input: text
    save: day
    next: bye
  bye:
    say: "Lovely: {{ service }} on {{ day }}. See you!"
    end: requested
  sorry:
    say: "Sorry, we do haircuts and colour only."
    end: not_understood
"""


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    (tmp_path / "salon.yaml").write_text(FLOW)
    settings = AppSettings(flows_dir=str(tmp_path))
    channels = ChannelRegistry()
    channels.register(WebChatChannel(secret=SECRET))
    runtime = await Runtime.create(settings, ConnectorRegistry(), channels)
    try:
        async with AsyncTestClient(create_app(settings, runtime=runtime)) as c:
            yield c
    finally:
        await runtime.close()


async def say(client: AsyncTestClient[Litestar], payload: dict[str, Any], secret: str = SECRET) -> Any:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return await client.post("/webhooks/webchat", content=body,
                             headers={"X-Webchat-Signature": signature, "Content-Type": "application/json"})


async def test_a_conversation_over_the_custom_channel(client: AsyncTestClient[Litestar]) -> None:
    first = (await say(client, {"visitor": "v-1", "id": "m1", "text": "hello"})).json()
    assert first == {"messages": [{"text": "Hi! Haircut or colour?", "buttons": [
        {"id": "cut", "label": "Haircut"}, {"id": "colour", "label": "Colour"}]}], "ended": False}
    second = (await say(client, {"visitor": "v-1", "id": "m2", "choice": "colour"})).json()
    assert second["messages"] == [{"text": "Which day suits you?"}]
    last = (await say(client, {"visitor": "v-1", "id": "m3", "text": "Friday"})).json()
    assert last == {"messages": [{"text": "Lovely: colour on Friday. See you!"}], "ended": True}
    # a retried delivery is answered the same and does not advance twice
    again = (await say(client, {"visitor": "v-1", "id": "m3", "text": "Friday"})).json()
    assert again == last


async def test_bad_signature_and_bad_json(client: AsyncTestClient[Litestar]) -> None:
    assert (await say(client, {"visitor": "v-2", "id": "m1", "text": "hi"}, secret="guess")).status_code == 403
    body = b'{"visitor": "v-2"'
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = await client.post("/webhooks/webchat", content=body, headers={"X-Webchat-Signature": signature})
    assert response.status_code == 400


class TestWebChatContract(ChannelContract):
    """The orchestrator's channel contract, run on the installed entry point as `serve` builds it."""

    entry_point = "webchat"
    env = {"WEBCHAT_SECRET": SECRET}

    def signed(self, adapter: Any, body: bytes) -> InboundRequest:
        return hmac_request("/webhooks/webchat", body, SECRET, header="x-webchat-signature")

    def sample_bodies(self) -> list[bytes]:
        return [b'{"visitor": "v-1", "id": "m1", "text": "hi"}', b'{"visitor": "v-1", "id": "m2", "choice": "cut"}']
