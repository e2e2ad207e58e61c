"""A business's daily limit on new conversations (`limits.conversations_per_day`), counted
atomically in its own store (one HINCRBY on `limits:conversations`, field = the business's local
date, expiring after a few days; the in-memory store's equivalent). Past the limit the runtime
refuses politely; the business's staff number is told once a day (the second counter says who
was first)."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.model import Outbound
from orchestrator.plugins.channels import Address, ReplyContext

log = logging.getLogger("orchestrator.businesses.limits")
COUNT_KEY = "limits:conversations"
TOLD_KEY = "limits:told"
KEEP_SECONDS = 3 * 86400
TOLD_TEXT = ("{name}: today's limit of {limit} new conversations is reached; new contacts are asked to call or "
             "write again tomorrow. Raise limits.conversations_per_day in business.yaml to take more.")


class DailyLimit:
    def __init__(self, business: Any, store: Any, *, clock: Any = time.time) -> None:
        self.business = business
        self.store = store
        self.clock = clock
        self.limit = int(business.config.limits.conversations_per_day or 0)
        self.zone = ZoneInfo(business.config.timezone)

    def day(self) -> str:
        return datetime.fromtimestamp(self.clock(), self.zone).strftime("%Y-%m-%d")

    async def admit(self, compiled: Any = None) -> bool:
        """Count one new conversation; False when it is past today's limit."""
        day = self.day()
        count = await self.store.side.hincrby(COUNT_KEY, day, 1, ttl_seconds=KEEP_SECONDS)
        if count <= self.limit:
            return True
        if await self.store.side.hincrby(TOLD_KEY, day, 1, ttl_seconds=KEEP_SECONDS) == 1:
            await self._tell_staff()
        return False

    async def used(self) -> int:
        raw = (await self.store.side.hgetall(COUNT_KEY)).get(self.day())
        return int(raw) if raw else 0

    async def _tell_staff(self) -> None:
        b = self.business
        log.warning("business %s reached its daily limit of %d conversations", b.id, self.limit,
                    extra={"business": b.id})
        target = b.config.staff_number
        sender = next((n for n in b.channels.names() if b.channels.get(n).capabilities.idiom == "sms"), None)
        if not target or sender is None:
            return
        frm = b.settings.twilio_from_number or ""
        text = TOLD_TEXT.format(name=b.name, limit=self.limit)
        try:
            await b.channels.get(sender).send(Address(business=frm, contact=target), [Outbound(kind="say", text=text)],
                                              ReplyContext(public_url=b.settings.public_url or "",
                                                           idempotency_key=f"limit-told:{b.id}:{self.day()}"))
        except Exception as exc:
            log.warning("business %s: limit notification not sent: %s", b.id, exc)
