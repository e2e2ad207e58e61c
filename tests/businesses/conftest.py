"""Two businesses in a temp dir, on the fake Twilio and Graph servers (each business its own
account, token and app secret), and the real app (create_app) serving them."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.graph import FakeGraph
from fakes.http import Recorded, Reply
from fakes.signing import (
    PUBLIC_URL,
    meta_body,
    meta_signature,
    sms_form,
    twilio_signature,
    wa_envelope,
    wa_text,
    wa_value,
)
from fakes.twilio import FakeTwilio
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.settings import AppSettings
from orchestrator.web.app import create_app

LUNA, SOL = "+34910000001", "+34910000002"
LUNA_WA, SOL_WA = "109876543210001", "109876543210002"
CONTACT = "+34600111222"
OPERATOR = "operator-token-0123456789"
TOKENS = {"luna_owner": "luna-owner-token-123", "luna_staff": "luna-staff-token-123",
          "sol_owner": "sol-owner-token-1234", "sol_staff": "sol-staff-token-1234"}
ACCOUNTS = {"luna_hair": ("AC" + "1" * 32, "luna-auth-token-0000"),
            "sol_dental": ("AC" + "2" * 32, "sol-auth-token-00000")}
WA = {"luna_hair": ("luna-wa-token", "luna-app-secret", "luna-verify"),
      "sol_dental": ("sol-wa-token", "sol-app-secret", "sol-verify")}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


FLOW = """\
flow: {flow}
title: {title}
start: ask_name
states:
  ask_name:
    ask: "Welcome to {title}! What's your name?"
    input: name
    save: who
    next: bye
  bye:
    say: "Thanks {{{{ who }}}}, {title} will call you."
    end: done
"""


def business_yaml(biz: str, number: str, wa: str, *, prefix: str, extra: str = "") -> str:
    return f"""\
business: {biz}
name: {biz.replace('_', ' ').title()}
timezone: Europe/Madrid
numbers:
  twilio: ["{number}"]
  whatsapp: ["{wa}"]
default_flow: intake
credentials:
  twilio: {{account_sid: env:{prefix}_SID, auth_token: env:{prefix}_TOKEN, from: "{number}"}}
  whatsapp: {{token: env:{prefix}_WA_TOKEN, app_secret: env:{prefix}_WA_SECRET, verify_token: env:{prefix}_WA_VERIFY}}
  calendar: {{kind: embedded}}
admins:
  - {{name: Owner, token_sha256: "{sha(TOKENS[prefix.lower() + '_owner'])}", role: owner}}
  - {{name: Front desk, token_sha256: "{sha(TOKENS[prefix.lower() + '_staff'])}", role: staff}}
retention_days: 30
{extra}"""


def write_business(root: Path, biz: str, number: str, wa: str, prefix: str, title: str, extra: str = "") -> Path:
    folder = root / biz
    (folder / "flows").mkdir(parents=True, exist_ok=True)
    (folder / "business.yaml").write_text(business_yaml(biz, number, wa, prefix=prefix, extra=extra))
    (folder / "flows" / "intake.yaml").write_text(FLOW.format(flow="intake", title=title))
    return folder


@pytest.fixture
def businesses_dir(tmp_path: Path) -> Path:
    root = tmp_path / "businesses"
    write_business(root, "luna_hair", LUNA, LUNA_WA, "LUNA", "Luna Hair")
    write_business(root, "sol_dental", SOL, SOL_WA, "SOL", "Sol Dental")
    return root


def secrets_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for biz, prefix in (("luna_hair", "LUNA"), ("sol_dental", "SOL")):
        env[f"{prefix}_SID"], env[f"{prefix}_TOKEN"] = ACCOUNTS[biz]
        env[f"{prefix}_WA_TOKEN"], env[f"{prefix}_WA_SECRET"], env[f"{prefix}_WA_VERIFY"] = WA[biz]
    return env


class MultiTwilio(FakeTwilio):
    """The fake Twilio REST API with one account per business (Basic auth checked per account)."""

    def __init__(self) -> None:
        super().__init__()
        self.accounts = dict(ACCOUNTS.values())

    def _answer(self, rec: Recorded) -> Reply:
        for sid, token in self.accounts.items():
            if f"/Accounts/{sid}/" in rec.path:
                self.account_sid, self.auth_token = sid, token
        return super()._answer(rec)


class MultiGraph(FakeGraph):
    def _answer(self, rec: Recorded) -> Reply:
        for token, _, _ in WA.values():
            if rec.headers.get("authorization") == f"Bearer {token}":
                self.token = token
        return super()._answer(rec)


@pytest.fixture
def twilio_fake() -> Iterator[MultiTwilio]:
    with MultiTwilio() as server:
        yield server


@pytest.fixture
def graph_fake() -> Iterator[MultiGraph]:
    with MultiGraph() as server:
        yield server


def make_settings(root: Path, twilio: FakeTwilio, graph: FakeGraph, **extra: Any) -> AppSettings:
    env = {**secrets_env(), "TWILIO_API_BASE": twilio.url, "WHATSAPP_API_BASE": graph.url}
    values: dict[str, Any] = dict(
        businesses_dir=str(root), public_url=PUBLIC_URL, admin_token=OPERATOR, timer_poll_seconds=0.05,
        reload_seconds=0, retention_interval_seconds=0, twilio_api_base=twilio.url, whatsapp_api_base=graph.url,
        environ=env,
    )
    values.update(extra)
    return AppSettings(**values)


@pytest.fixture(params=["memory", "redis"])
async def settings(request: pytest.FixtureRequest, businesses_dir: Path, twilio_fake: MultiTwilio,
                   graph_fake: MultiGraph) -> AsyncIterator[AppSettings]:
    """Both stores: in memory, and one real Redis shared by both businesses (a private prefix)."""
    if request.param == "memory":
        yield make_settings(businesses_dir, twilio_fake, graph_fake)
        return
    from rediskit import REDIS_URL, drop_prefix, unique_prefix

    prefix = unique_prefix("biz")
    yield make_settings(businesses_dir, twilio_fake, graph_fake, redis_url=REDIS_URL, key_prefix=prefix)
    await drop_prefix(prefix)


@pytest.fixture
async def client(settings: AppSettings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings), base_url="https://testserver.local") as c:
        yield c


async def sms(client: AsyncTestClient[Litestar], body: str, *, to: str, sender: str = CONTACT,
              token: str | None = None, sid: str | None = None) -> Any:
    biz = "luna_hair" if to == LUNA else "sol_dental"
    auth = token or ACCOUNTS[biz][1]
    form = sms_form(body, sender=sender, to=to, sid=sid or f"SM{abs(hash((body, to, sender))):032x}"[:34])
    path = "/webhooks/twilio/sms"
    return await client.post(path, content=urlencode(form).encode(), headers={
        "X-Twilio-Signature": twilio_signature(auth, f"{PUBLIC_URL}{path}", form),
        "Content-Type": "application/x-www-form-urlencoded"})


async def whatsapp(client: AsyncTestClient[Litestar], body: str, *, phone_id: str, secret: str,
                   sender: str = "34600111222", wamid: str = "wamid.A1") -> Any:
    value = wa_value([wa_text(body, wamid=wamid, sender=sender)])
    value["metadata"]["phone_number_id"] = phone_id
    raw = meta_body(wa_envelope(value))
    return await client.post("/webhooks/whatsapp", content=raw, headers={
        "X-Hub-Signature-256": meta_signature(raw, secret), "Content-Type": "application/json"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
