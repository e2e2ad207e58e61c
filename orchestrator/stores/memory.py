"""`SessionStore` in process memory: the embedded default when ORCHESTRATOR_REDIS_URL is unset.

Same contract as the Redis store (one contract test suite runs on both): dedupe, locks
with expiry and fencing, versions, TTLs by the injected clock. One process only.
"""

from __future__ import annotations

import collections
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.errors import StaleWrite
from orchestrator.stores.base import (
    FAILED_OUTBOX_KEPT,
    OPT_OUT_TTL_SECONDS,
    REVISION_TTL_SECONDS,
    STATUS_TTL_SECONDS,
    Begin,
    Commit,
    ContactExport,
    OutboxClaim,
    SessionInfo,
    entry_time,
    payload_contact,
    status_rank,
    wait_for_lock,
)
from orchestrator.stores.side import MemorySide


class _Expiring:
    """A dict whose entries vanish at their deadline (checked on read, by the injected clock)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._data: dict[str, tuple[Any, float]] = {}

    def get(self, key: str) -> Any:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._data[key]
            return None
        return item[0]

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        self._data[key] = (value, self._clock() + ttl_seconds)

    def pop(self, key: str) -> Any:
        item = self._data.pop(key, None)
        return None if item is None or item[1] <= self._clock() else item[0]

    def live_keys(self) -> list[str]:
        return [k for k in list(self._data) if self.get(k) is not None]


class MemoryStore:
    """Conversations in this process. `clock` is injectable so tests can move time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._sessions = _Expiring(clock)  # sid -> (data, version, timer member)
        self._locks = _Expiring(clock)  # sid -> token
        self._transcripts = _Expiring(clock)  # sid -> list[bytes]
        self._dedupe = _Expiring(clock)  # "sid|id" -> reply
        self._outbox_items = _Expiring(clock)  # outbox id -> payload
        self._contacts = _Expiring(clock)  # contact -> set of sids
        self._optouts = _Expiring(clock)
        self._revisions = _Expiring(clock)  # revision -> source
        self._flows: dict[str, dict[str, float]] = {}  # flow id -> revision -> first seen
        self._statuses = _Expiring(clock)  # message id -> (status, error)
        self._timers: dict[str, float] = {}  # member -> due
        self._outbox: dict[str, float] = {}  # outbox id -> ready at
        self._leases: dict[str, int] = {}  # outbox id -> claims since it was last rescheduled
        self._failed: collections.deque[tuple[float, bytes]] = collections.deque(maxlen=FAILED_OUTBOX_KEPT)
        self._index: dict[str, float] = {}  # sid -> updated_at
        self.side = MemorySide(clock)

    # the turn ------------------------------------------------------------------------
    async def begin(
        self, session_id: str, dedupe_id: str | None, *, lock_ttl_seconds: float, wait_seconds: float,
        contact: str | None = None,
    ) -> Begin:
        token = secrets.token_hex(8)

        async def attempt() -> Begin | None:
            if dedupe_id is not None:
                reply = self._dedupe.get(f"{session_id}|{dedupe_id}")
                if reply is not None:
                    return Begin(duplicate_reply=reply)
            if self._locks.get(session_id) is not None:
                return None
            self._locks.set(session_id, token, lock_ttl_seconds)
            stored = self._sessions.get(session_id)
            return Begin(
                session=stored[0] if stored else None,
                version=stored[1] if stored else 0,
                token=token,
                opted_out=bool(contact) and self._optouts.get(contact or "") is not None,
            )

        return await wait_for_lock(attempt, session_id, wait_seconds, poll_seconds=(0.001, 0.02))

    async def commit(self, session_id: str, token: str, commit: Commit) -> None:
        # No await before the last write: the whole commit is one step of the event loop.
        if self._locks.get(session_id) != token:
            raise StaleWrite(
                f"session {session_id!r}: the lock expired before the save and may belong to another "
                "turn now; the turn was not saved (raise ORCHESTRATOR_LOCK_TTL_SECONDS if turns are slow)"
            )
        stored = self._sessions.get(session_id)
        current = stored[1] if stored else 0
        if current != commit.expect_version:
            raise StaleWrite(
                f"session {session_id!r}: stored version is {current}, not {commit.expect_version} "
                "(another turn saved first); the turn was not saved"
            )
        now = self._clock()
        retention = commit.retention_seconds
        old_timer = stored[2] if stored else None
        new_timer = commit.timer.member if commit.timer else None
        if old_timer and old_timer != new_timer:
            self._timers.pop(old_timer, None)
        if commit.timer:
            self._timers[commit.timer.member] = commit.timer.due
        for reminder in commit.reminders:
            self._timers[reminder.member] = reminder.due
        self._sessions.set(session_id, (commit.session, commit.version, new_timer), commit.ttl_seconds)
        if commit.transcript:
            entries = self._transcripts.get(session_id) or []
            self._transcripts.set(session_id, [*entries, *commit.transcript], retention)
        if commit.dedupe_id and commit.reply is not None:
            self._dedupe.set(f"{session_id}|{commit.dedupe_id}", commit.reply, commit.dedupe_ttl_seconds)
        for item in commit.outbox:
            if item.id.rpartition("|")[0] != session_id:
                raise ValueError(f"outbox id {item.id!r} must start with the session id {session_id!r} + '|'")
            self._outbox_items.set(item.id, item.payload, retention)
            self._outbox[item.id] = commit.outbox_due
        self._index[session_id] = commit.updated_at or now
        for sid, at in list(self._index.items()):
            if at < now - retention:
                del self._index[sid]
        if commit.contact:
            sids = self._contacts.get(commit.contact) or set()
            self._contacts.set(commit.contact, sids | {session_id}, retention)
        for put in commit.side:
            self.side.put(put)
        self._locks.pop(session_id)

    async def release(self, session_id: str, token: str) -> None:
        if token and self._locks.get(session_id) == token:
            self._locks.pop(session_id)

    async def load(self, session_id: str) -> bytes | None:
        stored = self._sessions.get(session_id)
        return stored[0] if stored else None

    async def load_many(self, session_ids: list[str]) -> list[bytes | None]:
        return [stored[0] if (stored := self._sessions.get(sid)) else None for sid in session_ids]

    # opt-outs ------------------------------------------------------------------------
    async def set_opt_out(self, contact: str, opted_out: bool) -> None:
        if opted_out:
            self._optouts.set(contact, self._clock(), OPT_OUT_TTL_SECONDS)
        else:
            self._optouts.pop(contact)

    async def is_opted_out(self, contact: str) -> bool:
        return self._optouts.get(contact) is not None

    # flow revisions ------------------------------------------------------------------
    async def put_revision(self, flow_id: str, revision: str, source: str) -> None:
        self._revisions.set(revision, source, REVISION_TTL_SECONDS)
        self._flows.setdefault(flow_id, {}).setdefault(revision, self._clock())

    async def get_revision(self, revision: str) -> str | None:
        source: str | None = self._revisions.get(revision)
        return source

    async def latest_revision(self, flow_id: str) -> str | None:
        revs = await self.list_revisions(flow_id)
        return revs[-1] if revs else None

    async def list_revisions(self, flow_id: str) -> list[str]:
        revs = self._flows.get(flow_id, {})
        return sorted(revs, key=lambda r: (revs[r], r))

    # timers and outbox ---------------------------------------------------------------
    async def claim_due_timers(self, now: float, limit: int = 100) -> list[str]:
        due = sorted((at, m) for m, at in self._timers.items() if at <= now)[:limit]
        for _, member in due:
            del self._timers[member]
        return [m for _, m in due]

    async def put_timer(self, member: str, due: float) -> None:
        self._timers[member] = due

    async def drop_timer(self, member: str) -> None:
        self._timers.pop(member, None)

    async def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxClaim]:
        out: list[OutboxClaim] = []
        for _ready, item_id in sorted((at, i) for i, at in self._outbox.items() if at <= now):
            if len(out) >= limit:
                break
            payload = self._outbox_items.get(item_id)
            if payload is None:
                del self._outbox[item_id]
                self._leases.pop(item_id, None)
                continue
            self._outbox[item_id] = now + lease_seconds
            claims = self._leases[item_id] = self._leases.get(item_id, 0) + 1
            contact = payload_contact(payload)
            out.append(OutboxClaim(item_id, payload, None if contact is None else await self.is_opted_out(contact),
                                   reclaimed=claims > 1))
        return out

    async def ack_outbox(self, item_id: str) -> None:
        self._outbox.pop(item_id, None)
        self._leases.pop(item_id, None)
        self._outbox_items.pop(item_id)

    async def finish_outbox(
        self, item_id: str, status: str, error_code: str | None = None, message_ids: Sequence[str] = (),
        failure: bytes = b"",
    ) -> None:
        await self.record_status(item_id, status, error_code)
        for message_id in message_ids:
            await self.record_status(message_id, "sent")
        if failure and self._outbox_items.get(item_id) is not None:
            self._failed.appendleft((self._clock(), failure))
        await self.ack_outbox(item_id)

    async def retry_outbox(self, item_id: str, payload: bytes, due: float) -> None:
        if item_id in self._outbox and self._outbox_items.get(item_id) is not None:
            self._outbox_items._data[item_id] = (payload, self._outbox_items._data[item_id][1])
            self._outbox[item_id] = due
            self._leases.pop(item_id, None)

    async def failed_outbox(self, limit: int = 100) -> list[bytes]:
        oldest = self._clock() - STATUS_TTL_SECONDS
        return [entry for at, entry in list(self._failed)[:limit] if at >= oldest]

    # delivery statuses ---------------------------------------------------------------
    async def record_status(self, message_id: str, status: str, error_code: str | None = None) -> str:
        current = self._statuses.get(message_id)
        if current is not None:
            rank = status_rank(current[0])
            if rank >= 9 or rank >= status_rank(status):
                kept: str = current[0]
                return kept
        self._statuses.set(message_id, (status, error_code or None), STATUS_TTL_SECONDS)
        return status

    async def get_status(self, message_id: str) -> tuple[str, str | None] | None:
        current = self._statuses.get(message_id)
        return (current[0], current[1]) if current else None

    # records -------------------------------------------------------------------------
    async def get_transcript(self, session_id: str) -> list[bytes]:
        return list(self._transcripts.get(session_id) or [])

    async def trim_transcript(self, session_id: str, older_than: float) -> int:
        """Drop the leading entries older than `older_than`; returns how many."""
        entries = self._transcripts.get(session_id)
        if not entries:
            return 0
        old = 0
        for raw in entries:
            if entry_time(raw) >= older_than:
                break
            old += 1
        if old:
            item = self._transcripts._data.get(session_id)
            if item is not None:
                self._transcripts._data[session_id] = (item[0][old:], item[1])
        return old

    async def list_sessions(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        live = [(at, sid) for sid, at in self._index.items()]
        live.sort(reverse=True)
        return [SessionInfo(sid, at) for at, sid in live[offset : offset + limit]]

    async def export_contact(self, contact: str) -> ContactExport:
        sids = sorted(self._contacts.get(contact) or set())
        sessions = {sid: s[0] for sid in sids if (s := self._sessions.get(sid))}
        return ContactExport(
            contact=contact, opted_out=await self.is_opted_out(contact), sessions=sessions,
            transcripts={sid: await self.get_transcript(sid) for sid in sids},
        )

    async def erase_contact(self, contact: str) -> int:
        sids = self._contacts.pop(contact)
        removed = 1 if sids else 0
        for sid in sorted(sids or set()):
            stored = self._sessions.pop(sid)
            if stored is not None:
                removed += 1
                if stored[2]:
                    self._timers.pop(stored[2], None)
            removed += self._transcripts.pop(sid) is not None
            removed += self._locks.pop(sid) is not None
            for key in self._dedupe.live_keys():
                if key.startswith(sid + "|"):
                    removed += self._dedupe.pop(key) is not None
            for item_id in self._outbox_items.live_keys():
                if item_id.rpartition("|")[0] == sid:
                    removed += self._outbox_items.pop(item_id) is not None
                    self._outbox.pop(item_id, None)
            self._index.pop(sid, None)
        kept = [(at, entry) for at, entry in self._failed if payload_contact(entry) != contact]
        removed += len(self._failed) - len(kept)
        self._failed.clear()
        self._failed.extend(kept)
        return removed

    async def check_writes(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
