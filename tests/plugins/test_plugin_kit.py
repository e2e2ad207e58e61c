"""The plugin kit: typed settings with secrets, one registry, duplicate names refused, the
`plugins` command, and the session remembering its adapter."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Annotated

import pytest

from orchestrator.cli.main import main
from orchestrator.errors import ConfigError
from orchestrator.logs import redact
from orchestrator.model import Event
from orchestrator.plugins.base import PluginSettings, Secret, discover, env, load, read_settings
from orchestrator.plugins.channels import (
    ENTRY_POINT_GROUP,
    Address,
    Capabilities,
    ChannelAdapter,
    ChannelRegistry,
    Inbound,
    Outbound,
    ReplyContext,
)
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.plugins.listing import main_plugins
from orchestrator.runtime.pipeline import Runtime
from orchestrator.settings import AppSettings


class ShopSettings(PluginSettings):
    url: str = "https://shop.example.com"
    token: Secret | None = None
    timeout_seconds: float = 5.0
    live: bool = False
    public_url: Annotated[str | None, env("ORCHESTRATOR_PUBLIC_URL")] = None


def test_settings_are_typed_read_under_the_prefix_and_secrets_redacted() -> None:
    token = "shop-token-9f8e7d6c5b"
    config = read_settings(ShopSettings, "SHOP_", {
        "SHOP_TOKEN": token, "SHOP_TIMEOUT_SECONDS": "2.5", "SHOP_LIVE": "true",
        "ORCHESTRATOR_PUBLIC_URL": "https://bot.example.com", "TOKEN": "not mine",
    })
    assert (config.token, config.timeout_seconds, config.live, config.url) == (token, 2.5, True,
                                                                              "https://shop.example.com")
    assert config.public_url == "https://bot.example.com"
    assert token not in repr(config)
    assert redact(f"calling with {token}") == "calling with [secret]"  # registered as it was read


def test_a_bad_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="SHOP_TIMEOUT_SECONDS"):
        read_settings(ShopSettings, "SHOP_", {"SHOP_TIMEOUT_SECONDS": "soon"})


def fake_distribution(root: Path, dist: str, group: str, name: str, value: str) -> None:
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {value}\n")


def test_two_plugins_with_one_name_are_refused_until_a_setting_picks_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(tmp_path, "other-calendar", "orchestrator.connectors", "calendar", "pricing_connector:Pricing")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"two orchestrator.connectors plugins are named 'calendar'.*"
                                          r"ORCHESTRATOR_PLUGINS_PREFER=calendar=<package>"):
        load("orchestrator.connectors", {})
    chosen = {b.installed.name: b for b in load("orchestrator.connectors",
                                                 {"ORCHESTRATOR_PLUGINS_PREFER": "calendar=other-calendar"})}
    assert chosen["calendar"].installed.value == "pricing_connector:Pricing"
    registry = ConnectorRegistry()
    registry.load_entry_points({"ORCHESTRATOR_PLUGINS_PREFER": "calendar=integrations"})
    assert type(registry.get("calendar")).__name__ == "EmbeddedCalendar"
    assert main(["plugins"]) == 1  # what serve would refuse, the listing reports


def test_serve_builds_a_channel_declared_as_the_docs_show() -> None:
    settings = AppSettings.from_env({"WEBCHAT_SECRET": "webchat-secret-123456"})
    from orchestrator.web.app import build_channels

    channels = build_channels(settings)
    assert channels.names() == ["webchat"]
    assert "webchat" in {i.name for i in discover(ENTRY_POINT_GROUP)}


def test_plugins_command_lists_settings_and_never_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    environ = {"WEBCHAT_SECRET": "webchat-secret-123456", "PRICING_CURRENCY": "EUR"}
    assert main_plugins(as_json=True, out=out, environ=environ) == 0
    listed = {p["name"]: p for p in json.loads(out.getvalue())["plugins"]}
    assert listed["webchat"]["status"] == "configured" and listed["whatsapp"]["status"] == "not configured"
    assert {"env": "WEBCHAT_SECRET", "secret": True, "set": True} in listed["webchat"]["settings"]
    assert {"env": "PRICING_CURRENCY", "secret": False, "set": True, "value": "EUR"} in listed["pricing"]["settings"]
    text = io.StringIO()
    main_plugins(out=text, environ=environ)
    assert "WEBCHAT_SECRET (secret): set" in text.getvalue() and "webchat-secret-123456" not in text.getvalue()
    bad = io.StringIO()
    assert main_plugins(out=bad, environ={"TWILIO_AUTH_TOKEN": "x" * 32}) == 1
    assert "TWILIO_ACCOUNT_SID is not set" in bad.getvalue()


# ---- the session remembers its adapter ---------------------------------------------------------

FLOW = """\
flow: intake
start: ask_name
settings: {no_reply_timeout: 10m}
states:
  ask_name:
    ask: "Your name?"
    input: text
    save: name
    next: done
  done:
    say: "Thanks"
    end: finished
"""


class Chat(ChannelAdapter):
    capabilities = Capabilities(idiom="webchat", sync_reply=False)

    def __init__(self, name: str) -> None:
        self.adapter_name = name
        self.sent: list[list[str]] = []

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.adapter_name

    async def send(self, to: Address, messages: list[Outbound], ctx: ReplyContext) -> list[str]:
        self.sent.append([m.text for m in messages if m.text])
        return [f"m{len(self.sent)}"]


async def test_a_timer_answers_on_the_adapter_the_contact_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "intake.yaml").write_text(FLOW)
    first, second = Chat("chat_a"), Chat("chat_b")  # one idiom, two adapters (two sites)
    channels = ChannelRegistry()
    channels.register(first)
    channels.register(second)
    now = [1_800_000_000.0]
    runtime = await Runtime.create(AppSettings(flows_dir=str(tmp_path), default_flow="intake"), ConnectorRegistry(),
                                   channels, clock=lambda: now[0])
    try:
        event = Event(kind="text", channel="webchat", text="hi", provider_id="m1")
        await runtime.handle("chat_b", Inbound(address=Address(business="site", contact="v-1"), event=event,
                                               route_key="site"))
        await runtime.send_outbox()
        assert second.sent == [["Your name?"]] and first.sent == []
        now[0] += 11 * 60
        with caplog.at_level(logging.WARNING):
            assert await runtime.fire_due_timers() == 1
        await runtime.send_outbox()
        assert first.sent == [] and len(second.sent) == 2  # the reminder went where the contact is
    finally:
        await runtime.close()
