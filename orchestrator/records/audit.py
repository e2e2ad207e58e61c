"""The admin audit log: who did what to which target, and when; kept for the retention period.

    audit = AuditLog(store, retention_seconds)
    await audit.write(who="admin:3f2a9c", action="PUT /api/flows/{id}", target="flow:dental_booking",
                      status=200)
    entries = await audit.entries(limit=50)

Entries live in one sorted set (`audit`, score = time) beside the session store; each write
drops entries older than the retention period and refreshes the key's TTL. A contact's
phone number never appears in an entry: targets name a contact by `contact:<keyed hash>`,
HMAC-SHA256 under the deployment's audit key (`audit_key`: ORCHESTRATOR_AUDIT_KEY, else
derived from ORCHESTRATOR_ADMIN_TOKEN), so nobody without the key can find a number by
hashing every number there is, while the same number under the same key always gives the same
reference (an erasure request can be proved later; keep ORCHESTRATOR_AUDIT_KEY set across
admin-token rotations to keep references comparable).

Refused requests (no or a wrong token) are not one entry each, or anonymous clients could fill
Redis: they are counted per minute in one hash (`audit:refused`, at most one field a minute for
the retention period), shown by `entries()` as one `refused` entry per minute with its count,
and `RefusalLimiter` (per client address, in process) answers 429 once a client has been
refused too often, before anything is written.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import msgspec

from orchestrator.stores.base import SessionStore

AUDIT_KEY = "audit"
REFUSED_KEY = "audit:refused"  # minute (epoch // 60) -> refused requests in that minute
_PROCESS_KEY = secrets.token_bytes(32)  # no admin token: no admin API, so nothing is audited anyway


class AuditEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    at: float
    who: str
    action: str
    target: str = ""
    status: int = 0
    detail: dict[str, Any] = {}
    id: str = ""
    business: str = ""  # many businesses: the business acted on ("" for one business)
    admin: str = ""  # many businesses: the admin's name from business.yaml, or "operator"


_decoder = msgspec.json.Decoder(AuditEntry)
_encoder = msgspec.json.Encoder()


def fingerprint(token: str) -> str:
    """A stable, non-reversible name for a bearer token: `admin:<first 12 hex of sha256>`."""
    return "admin:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def audit_key(settings: Any) -> bytes:
    """The key of the audit log's contact references: ORCHESTRATOR_AUDIT_KEY, else one derived
    from ORCHESTRATOR_ADMIN_TOKEN (never the token itself), else a key of this process."""
    explicit = getattr(settings, "audit_key", None)
    if explicit:
        return str(explicit).encode()
    token = getattr(settings, "admin_token", None)
    if token:
        return hmac.new(str(token).encode(), b"orchestrator audit contact references", hashlib.sha256).digest()
    return _PROCESS_KEY


def contact_ref(phone: str, key: bytes) -> str:
    """`contact:<16 hex of HMAC-SHA256(key, contact id)>`: stable under one key, unguessable without it."""
    return "contact:" + hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()[:16]


class RefusalLimiter:
    """A token bucket per client address for refused admin requests: `burst` refusals at once,
    then `per_second`; beyond that `allow` is False (answer 429, write nothing). In process and
    bounded: at most `max_clients` addresses are tracked (the longest unseen is forgotten)."""

    def __init__(self, *, burst: int = 20, per_second: float = 0.5, max_clients: int = 10_000,
                 clock: Any = time.monotonic) -> None:
        self.burst, self.per_second, self.max_clients, self.clock = float(burst), per_second, max_clients, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at), oldest first

    def allow(self, client: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_clients:
            del self._buckets[next(iter(self._buckets))]
        return allowed

    def retry_after(self, client: str) -> int:
        tokens, _ = self._buckets.get(client, (self.burst, 0.0))
        return max(1, int((1.0 - tokens) / self.per_second + 0.999))


class AuditLog:
    def __init__(self, store: SessionStore, retention_seconds: int, *, clock: Any = time.time) -> None:
        self.side = store.side
        self.retention_seconds = max(1, int(retention_seconds))
        self.clock = clock

    async def write(
        self, *, who: str, action: str, target: str = "", status: int = 0, detail: dict[str, Any] | None = None,
        business: str = "", admin: str = "",
    ) -> AuditEntry:
        now = self.clock()
        entry = AuditEntry(at=now, who=who, action=action, target=target, status=status,
                           detail=detail or {}, id=secrets.token_hex(6), business=business, admin=admin)
        await self.side.zadd(AUDIT_KEY, _encoder.encode(entry).decode(), now, ttl_seconds=self.retention_seconds)
        await self.side.zremrangebyscore(AUDIT_KEY, now - self.retention_seconds)
        return entry

    async def refused(self) -> int:
        """Count one refused request in this minute's field; returns the minute's count."""
        minute = int(self.clock() // 60)
        return await self.side.hincrby(REFUSED_KEY, str(minute), 1, ttl_seconds=self.retention_seconds)

    async def entries(self, *, limit: int = 100, since: float | None = None) -> list[AuditEntry]:
        low = since if since is not None else float("-inf")
        rows = await self.side.zrange(AUDIT_KEY, low=low, desc=True, limit=limit)
        found = [_decoder.decode(member) for member, _ in rows]
        oldest = self.clock() - self.retention_seconds
        for minute, count in (await self.side.hgetall(REFUSED_KEY)).items():
            at = int(minute) * 60.0
            if at >= low and at + 60 > oldest:
                found.append(AuditEntry(at=at, who="anonymous", action="refused /api (per minute)", status=401,
                                        detail={"count": int(count)}, id=f"refused-{minute}"))
        found.sort(key=lambda e: e.at, reverse=True)
        return found[:limit]

    async def purge_before(self, cutoff: float) -> int:
        old = [m for m in await self.side.hgetall(REFUSED_KEY) if (int(m) + 1) * 60 <= cutoff]
        if old:
            await self.side.hset(REFUSED_KEY, {}, ttl_seconds=self.retention_seconds, drop=old)
        return await self.side.zremrangebyscore(AUDIT_KEY, cutoff) + len(old)
