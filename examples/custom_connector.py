"""A complete custom connector: price quotes for a flow, registered without touching the engine.

A connector is any object with a `name` and an `actions` mapping; each action pairs a
msgspec Struct (its arguments, converted from the state's rendered `args:`) with an async
function returning a `ConnectorResult` whose outcome picks the route (`ok`, `empty`,
`conflict`, `error`). Expected failures are returned as `error`, never raised.

Use it in a flow:

    quote:
      call: pricing.quote
      args: {service: "{{ reason }}"}
      save: price
      on: {ok: tell_price, empty: no_price, error: handoff}
    tell_price:
      say: "A {{ price.service }} is {{ price.label }}."

Register it explicitly (`registry.register(Pricing())`) or, from your own package, through
the entry-point group the server loads at start-up:

    [project.entry-points."orchestrator.connectors"]
    pricing = "my_package.pricing:Pricing"
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from orchestrator.plugins.connectors import Action, CallContext, ConnectorResult

DEFAULT_PRICES = {"cleaning": 9500, "checkup": 6000, "whitening": 25000}  # in cents


class QuoteArgs(msgspec.Struct, kw_only=True):
    service: str
    currency: str = "USD"


class Pricing:
    name = "pricing"

    def __init__(self, prices: Mapping[str, int] | None = None) -> None:
        self.prices = {k.lower(): v for k, v in (prices or DEFAULT_PRICES).items()}
        self.actions: Mapping[str, Action] = {"quote": Action(QuoteArgs, self.quote, "the price of a service")}

    async def quote(self, args: QuoteArgs, ctx: CallContext) -> ConnectorResult:
        service = args.service.strip().lower()
        if args.currency != "USD":
            return ConnectorResult(outcome="error", detail=f"pricing.quote: currency {args.currency!r} unsupported; "
                                                           "use USD")
        cents = self.prices.get(service)
        if cents is None:
            return ConnectorResult(outcome="empty", detail=f"no price for {service!r}")
        return ConnectorResult(outcome="ok", value={
            "service": service, "cents": cents, "currency": "USD", "label": f"${cents // 100}.{cents % 100:02d}",
        })
