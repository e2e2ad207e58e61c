"""The admin audit log: who did what to which target, and when; kept for the retention period.

    audit = AuditLog(store, retention_seconds)
    await audit.write(who="admin:3f2a9c", action="PUT /api/flows/{id}", target="flow:dental_booking",
                      status=200)
    entries = await audit.entries(limit=50)

Entries live in one sorted set (`audit`, score = time) beside the session store; each write
drops entries older than the retention period and refreshes the key's TTL. A contact's
phone number never appears in an entry: targets name a contact by `contact:<hash>` (the
same number always gives the same hash, so an erasure request can be proved later).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import msgspec

from .sidestore import side_store
from .store import SessionStore

AUDIT_KEY = "audit"


class AuditEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    at: float
    who: str
    action: str
    target: str = ""
    status: int = 0
    detail: dict[str, Any] = {}
    id: str = ""


_decoder = msgspec.json.Decoder(AuditEntry)
_encoder = msgspec.json.Encoder()


def fingerprint(token: str) -> str:
    """A stable, non-reversible name for a bearer token: `admin:<first 12 hex of sha256>`."""
    return "admin:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def contact_ref(phone: str) -> str:
    return "contact:" + hashlib.sha256(phone.encode()).hexdigest()[:16]


class AuditLog:
    def __init__(self, store: SessionStore, retention_seconds: int, *, clock: Any = time.time) -> None:
        self.side = side_store(store)
        self.retention_seconds = max(1, int(retention_seconds))
        self.clock = clock

    async def write(
        self, *, who: str, action: str, target: str = "", status: int = 0, detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        now = self.clock()
        entry = AuditEntry(at=now, who=who, action=action, target=target, status=status,
                           detail=detail or {}, id=secrets.token_hex(6))
        await self.side.zadd(AUDIT_KEY, _encoder.encode(entry).decode(), now, ttl_seconds=self.retention_seconds)
        await self.side.zremrangebyscore(AUDIT_KEY, now - self.retention_seconds)
        return entry

    async def entries(self, *, limit: int = 100, since: float | None = None) -> list[AuditEntry]:
        rows = await self.side.zrange(AUDIT_KEY, low=since if since is not None else float("-inf"),
                                      desc=True, limit=limit)
        return [_decoder.decode(member) for member, _ in rows]

    async def purge_before(self, cutoff: float) -> int:
        return await self.side.zremrangebyscore(AUDIT_KEY, cutoff)
