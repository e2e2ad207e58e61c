"""docs/EXTENDING.md, followed literally: the example channel and connector installed as
packages (`pip install -e examples/...`), configured only through the environment, and one
conversation through `orchestrator serve` using both."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import httpx
from faults.faultkit import ServerProcess, free_port

from orchestrator.testing.signing import hmac_sha256

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
    next: quote
    on: {fail: sorry}
  quote:
    call: pricing.quote
    args: {service: "{{ service }}"}
    save: price
    on: {ok: tell, empty: sorry, error: sorry}
  tell:
    say: "A {{ service }} is {{ price.label }}. See you!"
    end: priced
  sorry:
    say: "Sorry, please call us."
    end: not_understood
"""


class Serve(ServerProcess):
    """`orchestrator serve --port N --flows DIR`, the command the docs give."""

    def __init__(self, env: dict[str, str], flows: Path) -> None:
        super().__init__(env, port=free_port())
        self.flows = flows

    def command(self) -> list[str]:
        exe = shutil.which("orchestrator", path=str(Path(sys.executable).parent)) or "orchestrator"
        return [exe, "serve", "--port", str(self.port), "--flows", str(self.flows)]


def post(server: Serve, payload: dict[str, str]) -> httpx.Response:
    body = json.dumps(payload).encode()
    return httpx.post(server.url + "/webhooks/webchat", content=body, timeout=10,
                      headers={"X-Webchat-Signature": hmac_sha256(SECRET, body), "Content-Type": "application/json"})


def test_a_conversation_through_serve_with_the_example_plugins(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "salon.yaml").write_text(FLOW)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCHESTRATOR_", "TWILIO_", "WHATSAPP_", "WEBCHAT_", "PRICING_"))}
    env.update({"WEBCHAT_SECRET": SECRET, "PRICING_PRICES": "cut=4500,colour=8000",
                "ORCHESTRATOR_ROUTES": "webchat=salon", "ORCHESTRATOR_CALENDAR_DB": str(tmp_path / "c.sqlite3"),
                "ORCHESTRATOR_RELOAD_SECONDS": "0"})
    with Serve(env, flows) as server:
        first = post(server, {"visitor": "v-1", "id": "m1", "text": "hello"})
        assert first.status_code == 200, server.log_text()
        assert first.json()["messages"][0]["buttons"] == [{"id": "cut", "label": "Haircut"},
                                                          {"id": "colour", "label": "Colour"}]
        last = post(server, {"visitor": "v-1", "id": "m2", "choice": "colour"}).json()
        assert last == {"messages": [{"text": "A colour is $80.00. See you!"}], "ended": True}
        forged = httpx.post(server.url + "/webhooks/webchat", content=b"{}", timeout=10,
                            headers={"X-Webchat-Signature": "sha256=00"})
        assert forged.status_code == 403
        assert SECRET not in server.log_text()
