"""A business's limits, kept in its own store.

- `limits.conversations_per_day`: one atomic HINCRBY on `limits:conversations` per new
  conversation (field = the business's local date, kept a few days; the in-memory store's
  equivalent). Past it the runtime opens the flow's `defaults.limit` state or refuses politely;
  the business's staff number is told once a day (a second counter says who was first).
- `limits.concurrent_calls`: calls in progress in a sorted set `limits:calls` (member = CallSid,
  score = its start). A call is admitted when it is among the `limit` oldest members after its
  ZADD: every process sees the same order, so no more than `limit` are ever admitted at once
  without a lock or a script. Its terminal status callback removes it; a call whose callback
  never came is dropped after MAX_CALL_SECONDS."""

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


CALLS_KEY = "limits:calls"
MAX_CALL_SECONDS = 4 * 3600
BUSY_TEXT = "Sorry, all our lines are busy right now. Please call again in a few minutes, or send us a text."


class CallLimit:
    def __init__(self, limit: int, store: Any, *, clock: Any = time.time) -> None:
        self.limit = limit
        self.store = store
        self.clock = clock

    async def admit(self, call_sid: str) -> bool:
        now = self.clock()
        side = self.store.side
        await side.zremrangebyscore(CALLS_KEY, now - MAX_CALL_SECONDS)
        oldest = await side.zrange(CALLS_KEY, limit=self.limit)
        if any(member == call_sid for member, _ in oldest):
            return True  # a redelivered start of an admitted call
        await side.zadd(CALLS_KEY, call_sid, now, ttl_seconds=MAX_CALL_SECONDS)
        oldest = await side.zrange(CALLS_KEY, limit=self.limit)
        if any(member == call_sid for member, _ in oldest):
            return True
        await side.zrem(CALLS_KEY, [call_sid])
        return False

    async def ended(self, call_sid: str) -> None:
        await self.store.side.zrem(CALLS_KEY, [call_sid])
