"""A connector plugin: price quotes for a flow, installed as its own package.

Use it in a flow:

    quote:
      call: pricing.quote
      args: {service: "{{ reason }}"}
      save: price
      on: {ok: tell_price, empty: no_price, error: handoff}
    tell_price:
      say: "A {{ price.service }} is {{ price.label }}."

Installed (`pip install -e examples/custom_connector`), its entry point registers it in
`orchestrator serve`, `validate`, `chat` and `test`. Its settings (PRICING_*) come from the
environment; with none set it quotes DEFAULT_PRICES.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from orchestrator.errors import ConfigError
from orchestrator.plugins.base import PluginSettings
from orchestrator.plugins.connectors import Action, CallContext, Connector, ConnectorResult

DEFAULT_PRICES = {"cleaning": 9500, "checkup": 6000, "whitening": 25000}  # in cents


class PricingSettings(PluginSettings):
    prices: str = ""  # PRICING_PRICES: "cleaning=9500,checkup=6000" (cents); unset: DEFAULT_PRICES
    currency: str = "USD"  # PRICING_CURRENCY: the only currency quoted


class QuoteArgs(msgspec.Struct, kw_only=True):
    service: str
    currency: str = "USD"


class Pricing(Connector):
    name = "pricing"
    settings_type = PricingSettings
    env_prefix = "PRICING_"

    def __init__(self, prices: Mapping[str, int] | None = None, currency: str = "USD") -> None:
        self.prices = {k.lower(): v for k, v in (prices or DEFAULT_PRICES).items()}
        self.currency = currency
        self.actions: Mapping[str, Action] = {"quote": Action(QuoteArgs, self.quote, "the price of a service")}

    @classmethod
    def is_configured(cls, config: PricingSettings) -> bool:
        return True  # works with its defaults

    @classmethod
    def from_settings(cls, config: PricingSettings) -> Pricing:
        prices: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in config.prices.split(","))):
            service, _, cents = item.partition("=")
            if not cents.strip().isdigit():
                raise ConfigError(f"PRICING_PRICES: bad entry {item!r}; write 'service=cents', e.g. 'cleaning=9500'")
            prices[service.strip()] = int(cents)
        return cls(prices or None, currency=config.currency)

    async def quote(self, args: QuoteArgs, ctx: CallContext) -> ConnectorResult:
        service = args.service.strip().lower()
        if args.currency != self.currency:
            return ConnectorResult(outcome="error", detail=f"pricing.quote: currency {args.currency!r} unsupported; "
                                                           f"use {self.currency}")
        cents = self.prices.get(service)
        if cents is None:
            return ConnectorResult(outcome="empty", detail=f"no price for {service!r}")
        return ConnectorResult(outcome="ok", value={
            "service": service, "cents": cents, "currency": self.currency,
            "label": f"${cents // 100}.{cents % 100:02d}",
        })
