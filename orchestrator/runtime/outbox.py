"""The outbox sender: what turns queued (`OutboxItem`, saved with the turn's commit) goes out here.

    sender = OutboxSender(store, channels, catalog, settings, undelivered=runtime.feed_undelivered)
    await sender.send()            # one pass: claim ready items, send them; returns how many were sent
    await sender.run()             # passes until cancelled (woken at once by `sender.wake`)

Each contact's items go in order while contacts send concurrently, at most
`outbox_concurrency` calls per adapter; an item's parts are sent once (per-part progress and
idempotency keys), a send of unknown outcome is reconciled before it is sent again, failures
retry with capped backoff until `outbox_give_up_seconds`, then the item is fed back into its
conversation as `undelivered` and listed as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from orchestrator import metrics
from orchestrator.errors import FlowError, SendError
from orchestrator.logs import redact_phone
from orchestrator.model import Outbound
from orchestrator.plugins.channels import Address, ChannelRegistry
from orchestrator.runtime.catalog import FlowCatalog
from orchestrator.runtime.periodic import every
from orchestrator.runtime.replies import reply_context
from orchestrator.settings import AppSettings
from orchestrator.stores.base import FORMATS, ContactStore, OutboxClaim, OutboxStore, StatusStore

log = logging.getLogger("orchestrator.runtime.outbox")
OPT_OUT_RECHECK_SECONDS = 1.0  # an outbox claim's opt-out flag older than this is checked again
BATCH = 50  # items claimed per pass


class SenderStore(OutboxStore, StatusStore, ContactStore, Protocol):
    """What the sender needs of a store: its outbox, delivery statuses and opt-outs."""


class OutboxItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str  # "<session id>|<unique>": the idempotency key of this send (part i: `part_key(id, i)`)
    adapter: str
    business: str
    contact: str
    messages: list[Outbound]
    revision: str | None = None
    within_window: bool = True
    attempts: int = 0
    created_at: float = 0.0
    fmt: int = 1  # stored format (store.FORMATS): stays 1 by default, a newer format sets it
    sent: int = 0  # provider calls (parts) of this item accepted so far: a retry goes on from the next
    ids: list[str] = []  # their provider message ids
    unknown_since: float = 0.0  # part `sent` went out at this time with no answer: reconcile before resending
    window_ends: float = 0.0  # WhatsApp: the customer-service window closes then (0: not known)


class FailedSend(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An outbox item given up (GET /api/outbox/failed): who, what, why, after how long."""

    id: str
    session_id: str
    adapter: str
    contact: str
    reason: str  # the provider's error code, "gave_up" (retried until ORCHESTRATOR_OUTBOX_GIVE_UP_SECONDS), ...
    error: str  # what the last attempt said
    attempts: int
    parts_sent: int  # provider calls of the item accepted before it was given up (not resent)
    created_at: float
    failed_at: float
    texts: list[str] = []


_encoder = msgspec.msgpack.Encoder()
_outbox_decoder = msgspec.msgpack.Decoder(OutboxItem)


class OutboxSender:
    def __init__(
        self, store: SenderStore, channels: ChannelRegistry, catalog: FlowCatalog, settings: AppSettings, *,
        undelivered: Callable[[OutboxItem, SendError], Awaitable[bool]], clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.channels = channels
        self.catalog = catalog
        self.settings = settings
        self.clock = clock
        self._undelivered = undelivered  # feeds a refused item back into its conversation; False: retry later
        self.wake = asyncio.Event()  # set by a commit that queued items: the next pass starts at once
        self._slots: dict[str, asyncio.Semaphore] = {}  # sends in flight per adapter
        self._in_flight: set[tuple[str, str]] = set()  # (adapter, contact) being sent to by this process

    async def run(self) -> None:
        """Passes until cancelled; a full batch goes on at once (a backlog drains at send speed)."""
        await every(self.settings.timer_poll_seconds, self.send, what="outbox sender", wake=self.wake,
                    again=lambda sent: sent >= BATCH)

    async def send(self, limit: int = 50) -> int:
        """Send ready outbox items (leased); returns how many were sent.

        Each contact's items go in order, one send in flight per contact, while different contacts
        send concurrently, at most `outbox_concurrency` calls per adapter: one slow provider call
        delays only its own contact. An item's provider calls ("parts") are keyed
        `part_key(item id, i)`; the parts accepted are recorded in the item on a failure, so a retry
        never resends them. A send whose outcome is unknown (a timeout or reset after the request
        went out, a sender killed mid-send) is reconciled with the provider before it is sent again.
        Failures retry with capped backoff until `outbox_give_up_seconds` after the turn; then (or on
        a permanent refusal) the item is fed back into its conversation as `undelivered` (staff are
        told), listed by GET /api/outbox/failed and finished. The opt-out flag comes with the claim;
        a send long after its claim asks again (no flag older than OPT_OUT_RECHECK_SECONDS)."""
        now = self.clock()
        claimed_at = time.monotonic()
        chains: dict[tuple[str, str], list[tuple[OutboxClaim, OutboxItem]]] = {}
        for claim in await self.store.claim_outbox(now, limit, self.settings.outbox_lease_seconds):
            item = _outbox_decoder.decode(claim.payload)
            chains.setdefault((item.adapter, item.contact), []).append((claim, item))
        for chain in chains.values():
            if len(chain) > 1:  # the turns' order (claims come by ready-at: a retry moves it)
                chain.sort(key=lambda pair: pair[1].created_at)
        if len(chains) == 1:
            key, chain = next(iter(chains.items()))
            return await self._send_chain(key, chain, claimed_at)
        return sum(await asyncio.gather(*(self._send_chain(k, c, claimed_at) for k, c in chains.items())))

    async def _send_chain(
        self, key: tuple[str, str], chain: list[tuple[OutboxClaim, OutboxItem]], claimed_at: float,
    ) -> int:
        """One contact's claimed items, in order; an item left for a retry holds the later ones back."""
        if key in self._in_flight:  # another sender of this process is on this contact: wait behind it
            await self._defer(chain, self.clock() + 1.0)
            return 0
        self._in_flight.add(key)
        sent = 0
        try:
            for n, (claim, item) in enumerate(chain):
                done, due = await self._send_item(claim, item, claimed_at)
                sent += done
                if due is not None:
                    await self._defer(chain[n + 1:], due)
                    break
        finally:
            self._in_flight.discard(key)
        return sent

    async def _defer(self, chain: list[tuple[OutboxClaim, OutboxItem]], due: float) -> None:
        for k, (claim, item) in enumerate(chain, 1):
            payload = claim.payload
            if claim.reclaimed and not item.unknown_since:  # keep the reason to reconcile it
                item.unknown_since = item.created_at or self.clock()
                payload = _encoder.encode(item)
            await self.store.retry_outbox(item.id, payload, due + k * 0.001)

    def _slot(self, adapter: str) -> asyncio.Semaphore:
        slot = self._slots.get(adapter)
        if slot is None:
            slot = self._slots[adapter] = asyncio.Semaphore(max(1, self.settings.outbox_concurrency))
        return slot

    async def _sent_lookup(self, key: str) -> str | None:
        """A part whose status webhook came back carrying its key was accepted (reconciliation)."""
        return key if await self.store.get_status(key) is not None else None

    async def _send_item(self, claim: OutboxClaim, item: OutboxItem, claimed_at: float) -> tuple[bool, float | None]:
        """(sent, the due time when the item waits for a retry)."""
        if item.fmt > FORMATS["outbox"]:  # a newer release's item: its lease ends, a newer process takes it
            log.warning("outbox item %s is in format %d; left for a newer process", redact_phone(item.id), item.fmt)
            return False, None
        opted_out = claim.opted_out
        if opted_out is None or time.monotonic() - claimed_at > OPT_OUT_RECHECK_SECONDS:
            opted_out = await self.store.is_opted_out(item.contact)
        if opted_out:
            await self.store.finish_outbox(item.id, "canceled", "opted_out")
            return False, None
        settings = self.settings
        now = self.clock()
        if claim.reclaimed and not item.unknown_since:
            item.unknown_since = item.created_at or now  # its sender died mid-send: what went out is unknown
        if item.created_at and now - item.created_at >= settings.outbox_give_up_seconds:
            return await self._give_up(item, now, SendError(
                f"not sent within ORCHESTRATOR_OUTBOX_GIVE_UP_SECONDS={settings.outbox_give_up_seconds:g} of its turn",
                code="gave_up"))
        within = item.within_window and not (item.window_ends and now >= item.window_ends)
        if item.within_window and not within and item.sent:
            return await self._give_up(item, now, SendError(
                "the WhatsApp 24 h window closed before the rest of the turn was sent; free-form text cannot "
                "reach the contact now", code="window_closed"))
        compiled = None
        if item.revision:
            with contextlib.suppress(FlowError):
                compiled = await self.catalog.for_revision(item.revision)
        if compiled is not None and item.messages:  # the contact's language: its template, its voice
            compiled = compiled.for_tag(item.messages[0].language)
        ctx = reply_context(compiled, item.id.rpartition("|")[0], self.settings.public_url or "",
                            within_window=within, idempotency_key=item.id)
        ctx.sent_parts = item.sent
        if item.unknown_since:
            ctx.reconcile_since = item.unknown_since
            ctx.reconcile_final = now >= item.unknown_since + settings.outbox_reconcile_seconds
            ctx.sent_lookup = self._sent_lookup
        try:
            adapter = self.channels.get(item.adapter)
            async with self._slot(item.adapter):
                ids = await adapter.send(Address(business=item.business, contact=item.contact), item.messages, ctx)
        except Exception as exc:
            return await self._send_failed(item, exc, now)
        await self.store.finish_outbox(item.id, "sent", message_ids=item.ids + ids)
        metrics.labelled(metrics.SENDS, item.adapter, "sent").inc()
        return True, None

    async def _send_failed(self, item: OutboxItem, exc: Exception, started: float) -> tuple[bool, float | None]:
        metrics.labelled(metrics.SENDS, item.adapter, "failed").inc()
        settings = self.settings
        now = self.clock()
        retryable = exc.retryable if isinstance(exc, SendError) else not isinstance(exc, LookupError)
        accepted = exc.accepted if isinstance(exc, SendError) else []
        item.sent += len(accepted)
        item.ids = item.ids + accepted
        if isinstance(exc, SendError) and exc.unknown:
            item.unknown_since = started if accepted or not item.unknown_since else item.unknown_since
        else:
            item.unknown_since = 0.0  # the failing part was refused: it was not accepted
        item.attempts += 1
        out_of_time = item.created_at and now - item.created_at >= settings.outbox_give_up_seconds
        capped = settings.outbox_max_attempts and item.attempts >= settings.outbox_max_attempts
        if retryable and not out_of_time and not capped:
            due = now + min(2.0 ** item.attempts, settings.outbox_backoff_cap_seconds)
            if item.unknown_since:  # give its status webhook time to come back before reconciling
                due = max(due, item.unknown_since + settings.outbox_reconcile_seconds)
            await self.store.retry_outbox(item.id, _encoder.encode(item), due)
            log.warning("send %s failed (attempt %d, %d part(s) sent), retrying in %.0f s: %s",
                        redact_phone(item.id), item.attempts, item.sent, due - now, exc)
            return False, due
        if not isinstance(exc, SendError):
            exc = SendError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__)
        elif retryable and not exc.code:
            exc.code = "gave_up"
        return await self._give_up(item, now, exc)

    async def _give_up(self, item: OutboxItem, now: float, exc: SendError) -> tuple[bool, float | None]:
        """Fed into the conversation as `undelivered` (its flow's route, or the default: staff told), then
        listed as failed and finished. A feed that fails leaves the item for a later retry (fed once: deduped)."""
        if not await self._undelivered(item, exc):
            due = now + min(2.0 ** max(item.attempts, 1), self.settings.outbox_backoff_cap_seconds)
            await self.store.retry_outbox(item.id, _encoder.encode(item), due)
            return False, due
        reason = exc.code or (str(exc.status) if exc.status else "refused")
        failure = FailedSend(
            id=item.id, session_id=item.id.rpartition("|")[0], adapter=item.adapter, contact=item.contact,
            reason=reason, error=str(exc)[:300], attempts=item.attempts, parts_sent=item.sent,
            created_at=item.created_at, failed_at=now, texts=[m.text for m in item.messages if m.text],
        )
        await self.store.finish_outbox(item.id, "failed", reason, message_ids=item.ids,
                                       failure=_encoder.encode(failure))
        log.error("send %s given up after %d attempt(s) (%s): %s", redact_phone(item.id), item.attempts, reason, exc)
        return False, None
