"""Webhooks for many businesses (docs/SPEC.md §10): the number called (Twilio `To`; `From` on a
status callback of a message we sent) or the WhatsApp phone-number id picks the business, whose
own adapter verifies the signature with its own credentials (another business's signature is a
403) and whose runtime runs the turn. A number no business has is a 404 with a log line."""

from __future__ import annotations

import json
import logging
from typing import Any

from orchestrator import metrics
from orchestrator.errors import SignatureError
from orchestrator.logs import redact_phone
from orchestrator.plugins.channels import ChannelAdapter, ChannelRegistry, InboundRequest, Rendered
from orchestrator.web.app import WebhookGateway

log = logging.getLogger("orchestrator.web.business_gateway")
NOT_FOUND = Rendered(body=b"not found", status_code=404, media_type="text/plain")


def numbers_of(request: InboundRequest) -> list[str]:
    """The business-side numbers a webhook names, most likely first."""
    if request.form is not None:
        found = []
        for name in ("To", "From", "Called"):
            given = next((v for k, v in request.form if k == name), "")
            if given:
                found.append(given.removeprefix("whatsapp:"))
        return found
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return []
    out: list[str] = []
    for entry in payload.get("entry") or [] if isinstance(payload, dict) else []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            meta = value.get("metadata") if isinstance(value, dict) else None
            number = meta.get("phone_number_id") if isinstance(meta, dict) else None
            if isinstance(number, str | int) and str(number) not in out:
                out.append(str(number))
    return out


class BusinessGateway(WebhookGateway):
    def __init__(self, registry: Any, channels: ChannelRegistry, public_url: str | None) -> None:
        super().__init__(channels, public_url)
        self.registry = registry

    def pick(
        self, name: str, adapter: ChannelAdapter, request: InboundRequest,
    ) -> tuple[ChannelAdapter, Any] | Rendered:
        if request.method == "GET":  # Meta's subscription check: the business whose verify token it is
            for business in self.registry.businesses.values():
                if name in business.channels:
                    own = business.channels.get(name)
                    try:
                        own.handshake(request)
                    except SignatureError:
                        continue
                    return own, business.runtime
            raise SignatureError(f"{request.path}: no business's verify token matches the handshake")
        numbers = numbers_of(request)
        business = next((b for b in map(self.registry.for_number, numbers) if b is not None), None)
        if business is None and not numbers and request.form is not None:
            # a callback naming no number (Twilio's recordingStatusCallback): its account, when one
            # business alone has it (the signature check below still decides)
            account = next((v for k, v in request.form if k == "AccountSid"), "")
            business = self.registry.for_account(account)
        if business is None or name not in business.channels or business.runtime is None:
            metrics.REJECTIONS.labels(name, "unknown_number").inc()
            log.warning("webhook for a number no business serves on %s (404): %s", name,
                        ", ".join(redact_phone(n) for n in numbers) or "no number in the request",
                        extra={"channel": name})
            return NOT_FOUND
        return business.channels.get(name), business.runtime

    async def _answer(self, name: str, adapter: ChannelAdapter, items: list[Any], runtime: Any = None) -> Rendered:
        business = self.registry.get(getattr(runtime, "business_id", ""))
        if business is not None:  # a batch naming another business's number: not this business's turn
            own = set(business.config.all_numbers())
            kept = [i for i in items if getattr(i, "address", None) is None
                    or i.address.business.removeprefix("whatsapp:") in own or i.kind == "status"]
            if len(kept) != len(items):
                log.warning("webhook batch for business %s held %d item(s) of other numbers; skipped",
                            business.id, len(items) - len(kept), extra={"channel": name})
            items = kept
            if business.call_limit is not None and adapter.capabilities.idiom == "voice":
                refused = await self._calls(business, adapter, items)
                if refused is not None:
                    return refused
        return await super()._answer(name, adapter, items, runtime)

    async def _calls(self, business: Any, adapter: ChannelAdapter, items: list[Any]) -> Rendered | None:
        """limits.concurrent_calls: a call past it hears the busy message and is hung up; a call's
        terminal status frees its place."""
        from orchestrator.businesses.limits import BUSY_TEXT
        from orchestrator.model import Outbound
        from orchestrator.plugins.channels import ReplyContext

        for item in items:
            event = getattr(item, "event", None)
            if event is None or not event.provider_id:
                continue
            call_sid = event.provider_id.partition(":")[0]
            if event.kind == "hangup":
                await business.call_limit.ended(call_sid)
            elif event.kind == "start" and not await business.call_limit.admit(call_sid):
                log.warning("business %s: a call past limits.concurrent_calls (%d) was answered busy",
                            business.id, business.call_limit.limit, extra={"channel": adapter.name})
                text, settings = BUSY_TEXT, None
                try:  # in the language of the flow the call would have reached
                    compiled = await business.runtime.catalog.latest(business.runtime.catalog.route(None))
                    text, settings = str(compiled.words["lines_busy"]), compiled.settings
                except Exception:  # no flow to take the words from: the English ones
                    pass
                return adapter.render([Outbound(kind="say", text=text), Outbound(kind="end")],
                                      ReplyContext(public_url=self.public_url, settings=settings))
        return None


async def businesses_health(registry: Any) -> Any:
    from litestar import Response

    report: dict[str, Any] = {"status": "ok", "businesses": registry.ids(),
                              "refused": sorted(p.rsplit("/", 1)[-1] for p in registry.refused),
                              "channels": registry.channel_names()}
    first = next(iter(registry.businesses.values()), None)
    if first is None or first.runtime is None:
        report["status"] = "unavailable"
        return Response(report, status_code=503)
    try:
        await first.runtime.store.ping()
        await first.runtime.store.check_writes()
        report["store"] = "ok"
    except Exception as exc:
        report.update(status="unavailable", store=type(exc).__name__, reason=getattr(exc, "reason", ""))
    return Response(report, status_code=200 if report["status"] == "ok" else 503)
