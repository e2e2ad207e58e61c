"""Contract suites a plugin runs in its own tests: subclass, fill in the few hooks, and pytest
collects every check (name your subclass `Test...`).

    class TestWebChat(ChannelContract):
        entry_point = "webchat"
        env = {"WEBCHAT_SECRET": "s3cret-value"}              # what a deployment sets

        def signed(self, adapter, body: bytes) -> InboundRequest:
            return hmac_request("/webhooks/webchat", body, "s3cret-value", header="x-webchat-signature")

        def sample_bodies(self) -> list[bytes]:
            return [b'{"visitor": "v-1", "id": "m1", "text": "hi"}']

    class TestPricing(ConnectorContract):
        entry_point = "pricing"
        env = {"PRICING_CURRENCY": "USD"}
        calls = [("quote", {"service": "cleaning"})]

Each check says what the orchestrator relies on; a failure names the hook to fix.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec

from orchestrator.errors import BadRequest, SignatureError
from orchestrator.model import Outbound, OutChoice
from orchestrator.plugins.base import Plugin, SettingField, configure, discover, read_settings
from orchestrator.plugins.channels import (
    ENTRY_POINT_GROUP as CHANNELS,
)
from orchestrator.plugins.channels import (
    Address,
    Capabilities,
    ChannelAdapter,
    Inbound,
    InboundRequest,
    Rendered,
    ReplyContext,
)
from orchestrator.plugins.connectors import (
    ENTRY_POINT_GROUP as CONNECTORS,
)
from orchestrator.plugins.connectors import (
    OUTCOMES,
    Action,
    CallContext,
    Connector,
    ConnectorRegistry,
    ConnectorResult,
)

CALL_CONTEXT = CallContext(session_id="contract-session", flow="contract", contact="+15555550123",
                           timezone="UTC", language="en-US", now=1_800_000_000.0)


class _PluginContract:
    """Checks both kinds share: the entry point, the settings, the factory."""

    group: ClassVar[str] = ""
    env: ClassVar[dict[str, str]] = {}  # the environment of a configured deployment
    entry_point: ClassVar[str] = ""  # the name under [project.entry-points."orchestrator.<kind>"]

    def plugin_class(self) -> type[Plugin]:
        installed = self._installed()
        assert installed.error == "", f"entry point {installed.name} does not import: {installed.error}"
        return installed.factory

    def _installed(self) -> Any:
        found = {item.name: item for item in discover(self.group)}
        name = self.entry_point
        assert name, "set entry_point = \"<name>\" on the contract subclass: the name your pyproject.toml declares"
        assert name in found, (
            f"no {self.group!r} entry point named {name!r} is installed (found: {', '.join(found) or 'none'}): "
            f"declare it under [project.entry-points.\"{self.group}\"] in pyproject.toml and pip install the package"
        )
        return found[name]

    def build(self) -> Any:
        """The plugin as `serve` builds it from `env`."""
        built = configure(self._installed(), self.env)
        assert built.configured, f"{built.installed.name} says it is not configured with env={sorted(self.env)}"
        return built.instance

    def test_settings_are_a_plugin_settings_struct_read_from_the_environment(self) -> None:
        cls = self.plugin_class()
        fields: list[SettingField] = cls.settings_fields()
        for field in fields:
            assert field.env.isupper(), f"{field.name}: environment names are upper case, found {field.env!r}"
        read_settings(cls.settings_type, cls.env_prefix, self.env)

    def test_from_settings_builds_it_and_it_is_configured(self) -> None:
        plugin = self.build()
        assert plugin.name, "the plugin has no `name`"

    def test_an_empty_environment_builds_nothing_or_a_working_plugin(self) -> None:
        cls = self.plugin_class()
        config = read_settings(cls.settings_type, cls.env_prefix, {})
        if cls.is_configured(config):  # configured with no settings at all: it must build
            assert cls.from_settings(config) is not None


class ChannelContract(_PluginContract):
    """What every channel adapter must do. Fill in `env`, `signed` and `sample_bodies`."""

    group = CHANNELS

    def signed(self, adapter: Any, body: bytes) -> InboundRequest:
        """`body` as the provider would send it, correctly signed."""
        raise NotImplementedError("give signed(adapter, body): a correctly signed InboundRequest")

    def sample_bodies(self) -> list[bytes]:
        """Webhook bodies the provider really sends (at least one message)."""
        raise NotImplementedError("give sample_bodies(): bodies the provider really sends")

    def forged(self, adapter: Any, body: bytes) -> InboundRequest:
        """The same body with a wrong signature; default: the headers of a correct one, tampered body."""
        good = self.signed(adapter, body)
        return msgspec.structs.replace(good, body=body + b" ")

    def messages(self) -> list[Outbound]:
        return [Outbound(kind="say", text="Hello"),
                Outbound(kind="ask", text="Which one?", choices=[OutChoice(id="a", label="A"),
                                                                 OutChoice(id="b", label="B")])]

    def test_is_a_channel_adapter_with_capabilities_and_routes(self) -> None:
        adapter = self.build()
        assert isinstance(adapter, ChannelAdapter), "derive it from orchestrator.plugins.channels.ChannelAdapter"
        assert isinstance(adapter.capabilities, Capabilities)
        assert adapter.routes, "routes is empty: the server would mount no webhook"
        for method, path in adapter.routes:
            assert method in ("GET", "POST") and path.startswith("/"), f"bad route {(method, path)!r}"

    def test_verify_accepts_a_signed_request(self) -> None:
        adapter = self.build()
        for body in self.sample_bodies():
            adapter.verify(self.signed(adapter, body))

    def test_verify_refuses_a_forged_request(self) -> None:
        adapter = self.build()
        for body in self.sample_bodies():
            try:
                adapter.verify(self.forged(adapter, body))
            except SignatureError:
                continue
            raise AssertionError("verify() accepted a request whose signature does not match: raise SignatureError")

    def test_parse_gives_inbound_items(self) -> None:
        adapter = self.build()
        for body in self.sample_bodies():
            items = adapter.parse(self.signed(adapter, body))
            assert isinstance(items, list) and all(isinstance(i, Inbound) for i in items)
            for item in items:
                if item.kind == "event":
                    assert item.event is not None and item.address is not None, "an event names its address"

    def test_parse_refuses_a_malformed_body_with_bad_request(self) -> None:
        adapter = self.build()
        try:
            adapter.parse(self.signed(adapter, b"\x00not a webhook"))
        except BadRequest:
            return
        except Exception as exc:
            raise AssertionError(f"parse() raised {type(exc).__name__} for a malformed body: raise BadRequest") \
                from exc

    def test_render_gives_a_rendered_answer(self) -> None:
        adapter = self.build()
        rendered = adapter.render(self.messages(), ReplyContext())
        assert isinstance(rendered, Rendered) and isinstance(rendered.body, bytes)

    def test_send_gives_provider_ids_or_a_send_error(self) -> None:
        from orchestrator.errors import SendError

        adapter = self.build()
        try:
            ids = asyncio.run(adapter.send(Address(business="b", contact="+15555550123"), self.messages(),
                                           ReplyContext(idempotency_key="k1")))
        except SendError:
            return
        finally:
            asyncio.run(adapter.close())
        assert isinstance(ids, list) and all(isinstance(i, str) for i in ids)


class ConnectorContract(_PluginContract):
    """What every connector must do. Fill in `env` and `calls` (action, args) that succeed."""

    group = CONNECTORS
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def test_is_a_connector_with_typed_actions(self) -> None:
        connector = self.build()
        assert isinstance(connector, Connector), "derive it from orchestrator.plugins.connectors.Connector"
        assert connector.actions, "a connector with no actions: set self.actions in __init__"
        for name, action in connector.actions.items():
            assert isinstance(action, Action), f"action {name!r} is not an Action(args_struct, fn)"
            assert issubclass(action.args, msgspec.Struct), f"action {name!r}: args must be a msgspec Struct type"

    def _registry(self) -> tuple[ConnectorRegistry, str]:
        connector = self.build()
        registry = ConnectorRegistry()
        registry.register(connector)
        return registry, connector.name

    def test_calls_return_a_result_with_a_known_outcome(self) -> None:
        registry, name = self._registry()
        for action, args in self.calls:
            result = asyncio.run(registry.call(f"{name}.{action}", args, CALL_CONTEXT, 5.0))
            assert isinstance(result, ConnectorResult) and result.outcome in OUTCOMES
            assert result.outcome != "error", f"{name}.{action}({args}) failed: {result.detail}"
            msgspec.json.encode(result.value)  # saved into the session: it must be plain data

    def test_bad_arguments_are_an_error_outcome_not_an_exception(self) -> None:
        registry, name = self._registry()
        for action in registry.get(name).actions:
            result = asyncio.run(registry.call(f"{name}.{action}", {"__unknown__": object()}, CALL_CONTEXT, 5.0))
            assert result.outcome in OUTCOMES
