"""The custom connector example: alone, through the registry, and inside a flow run by the engine."""

from __future__ import annotations

from pricing_connector import Pricing

from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.flow.loader import load_flow_text
from orchestrator.model import Event
from orchestrator.plugins.connectors import CallContext, ConnectorRegistry
from orchestrator.testing.contract import ConnectorContract

CTX = CallContext(session_id="s1", flow="prices", contact="+15550001111", timezone="UTC", language="en-US",
                  now=1_800_000_000.0)

FLOW = """
flow: prices
start: ask_service
states:
  ask_service:
    ask: "Which service?"
    choices:
      cleaning: {match: [cleaning]}
      implant: {match: [implant]}
    save: service
    next: quote
  quote:
    call: pricing.quote
    args: {service: "{{ service }}"}
    save: price
    on: {ok: tell, empty: unknown, error: unknown}
  tell:
    say: "A {{ price.service }} is {{ price.label }}."
    end: priced
  unknown:
    say: "Please call us for that price."
    end: no_price
"""


async def test_quote_outcomes() -> None:
    pricing = Pricing({"Cleaning": 9550})
    ok = await pricing.quote(pricing.actions["quote"].args(service=" cleaning "), CTX)
    assert ok.outcome == "ok" and ok.value["label"] == "$95.50" and ok.value["cents"] == 9550
    assert (await pricing.quote(pricing.actions["quote"].args(service="implant"), CTX)).outcome == "empty"


async def test_registry_converts_args_and_reports_errors() -> None:
    registry = ConnectorRegistry()
    registry.register(Pricing())
    result = await registry.call("pricing.quote", {"service": "checkup"}, CTX, 1.0)
    assert result.value["label"] == "$60.00"
    wrong = await registry.call("pricing.quote", {"service": "checkup", "currency": "EUR"}, CTX, 1.0)
    assert wrong.outcome == "error" and "EUR" in (wrong.detail or "")
    missing = await registry.call("pricing.quote", {}, CTX, 1.0)
    assert missing.outcome == "error" and "service" in (missing.detail or "")


async def run(answer: str) -> tuple[str | None, list[str]]:
    registry = ConnectorRegistry()
    registry.register(Pricing())
    engine = Engine(compile_flow(load_flow_text(FLOW, "prices.yaml"), connectors=registry), registry)
    session = engine.new_session("biz:+15550001111", business="biz", contact="+15550001111", channel="sms",
                                 now=CTX.now)
    session = (await engine.turn(session, Event(kind="start", channel="sms"), CTX.now)).session
    result = await engine.turn(session, Event(kind="text", channel="sms", text=answer), CTX.now + 5)
    return result.session.outcome, [m.text for m in result.messages if m.text]


async def test_flow_uses_the_connector_without_engine_changes() -> None:
    assert await run("cleaning") == ("priced", ["A cleaning is $95.00."])
    assert await run("implant") == ("no_price", ["Please call us for that price."])


class TestPricingContract(ConnectorContract):
    """The orchestrator's connector contract, run on the installed entry point as `serve` builds it."""

    entry_point = "pricing"
    env = {"PRICING_PRICES": "cleaning=9500,checkup=6000"}
    calls = [("quote", {"service": "cleaning"}), ("quote", {"service": "implant"})]


def test_settings_come_from_the_environment() -> None:
    built = ConnectorRegistry()
    built.load_entry_points({"PRICING_PRICES": "cleaning=12000"})
    assert isinstance(pricing := built.get("pricing"), Pricing) and pricing.prices == {"cleaning": 12000}
