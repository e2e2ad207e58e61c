"""`SessionStore` on Redis: a turn costs two round trips (the `begin` and `commit` scripts).

Keys (prefix `orch` by default; `{sid}` is the hash tag shared by one conversation):

    orch:{sid}:s           string "<version>,<timer turns>," + the session, compressed when that pays
                           (`codecs.session_value`); the armed timer's member is
                           "<sid>|<timer turns>" (none when empty)
    orch:{sid}:l           lock token (SET NX PX)
    orch:{sid}:t           transcript list, one element per turn (`codecs.pack_turn`: its entries and the
                           reply to its delivery in one compressed blob), each delivery's tag
                           (`delivery_tag`) just before its turn: dedupe finds it with LPOS
    orch:{sid}:d           hash delivery key (`codecs.delivery_key`) -> reply, only for a delivery
                           whose turn wrote no transcript
    orch:{sid}:o:<uniq>    an outbox item; its id is "<sid>|<uniq>"
    orch:timers            zset member "<sid>|<turns>" (no-reply) or "<sid>|R<payload>" (a reminder) score due
    orch:outbox            zset member outbox id score ready-at       (global index)
    orch:outbox:leases     hash outbox id -> claims since it was last rescheduled (> 1: a sender died)
    orch:outbox:failed     list of given-up sends (`FailedSend`, newest first, FAILED_OUTBOX_KEPT at most)
    orch:sessions          zset sid score updated_at                  (global index)
    orch:c:<contact>       set of the contact's session ids
    orch:optout:<contact>  opt-out record
    orch:rev:<revision>    a flow revision's YAML source
    orch:flow:<flow id>    zset revision score first-seen
    orch:st:<message id>   hash s = delivery status, r = rank, e = error code

The scripts are lua/*.lua (`scripts.lua`), the values' layouts `codecs`. Every key gets a TTL.
The turn scripts also touch the global indexes, so they need a single Redis (or a cluster shard
per deployment): atomicity of a turn wins over cluster spreading; per-conversation keys still
share one slot.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.errors import NewerFormat, StaleWrite, StoreError, StoreUnavailable, StoreWriteRefused
from orchestrator.logs import redact_phone
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
from orchestrator.stores.codecs import (
    delivery_key,
    delivery_tag,
    is_delivery_tag,
    pack_turn,
    parse_session_value,
    session_value,
    turn_reply,
    unpack_turn,
)
from orchestrator.stores.resp import LeanRedis, NotSent, run_script
from orchestrator.stores.scripts import lua
from orchestrator.stores.side import RedisSide, put_script_args

log = logging.getLogger("orchestrator.stores.redis")

# `begin` finds a retried delivery's tag among the last DEDUPE_SCAN transcript elements: a
# delivery older than its conversation's last ~500 turns counts as new.
DEDUPE_SCAN = 1000
# The scripts (lua/*.lua, their KEYS and ARGV named at their top): a turn is BEGIN + COMMIT.
BEGIN_LUA = lua("begin.lua")
COMMIT_LUA = lua("commit.lua", "lib_put.lua")
SETTLE_LUA = lua("settle.lua")
OPT_OUT_LUA = lua("opt_out.lua")
RELEASE_LUA = lua("release.lua")
CLAIM_TIMERS_LUA = lua("claim_timers.lua")
CLAIM_OUTBOX_LUA = lua("claim_outbox.lua")
RETRY_OUTBOX_LUA = lua("retry_outbox.lua")
STATUS_LUA = lua("status.lua", "lib_status.lua")
FINISH_OUTBOX_LUA = lua("finish_outbox.lua", "lib_status.lua")


# Error replies meaning "Redis is up but takes no writes now", as Redis words them (a script's
# error carries the refused command's error: "OOM command not allowed ... script: ..."). A turn
# script is refused at its first write (Redis checks maxmemory, read-only and disk errors before
# a script's first write only, to keep the script atomic), so a refusal leaves nothing written.
_REFUSALS = (
    ("OOM command not allowed", "out_of_memory"),
    ("used memory > 'maxmemory'", "out_of_memory"),
    ("READONLY", "read_only"),
    ("read only replica", "read_only"),
    ("MISCONF", "disk_error"),
    ("NOREPLICAS", "no_replicas"),
)
_REFUSAL_FIX = {
    "out_of_memory": "Redis is at maxmemory: raise maxmemory or free memory (the turn's keys all have TTLs; "
                     "use maxmemory-policy noeviction, never an evicting policy, for this store)",
    "read_only": "ORCHESTRATOR_REDIS_URL points at a read-only replica: point it at the primary",
    "disk_error": "Redis cannot persist its snapshot (stop-writes-on-bgsave-error): fix its disk, see its log",
    "no_replicas": "Redis has fewer replicas than min-replicas-to-write: bring the replicas back",
}


def write_refusal(exc: ResponseError) -> str | None:
    """The reason code when an error reply means Redis refuses writes, else None."""
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError":
        return "out_of_memory"
    if type(exc).__name__ == "ReadOnlyError":
        return "read_only"
    return next((reason for needle, reason in _REFUSALS if needle in text), None)


def _split_token(token: str) -> tuple[str, float, int]:
    """(lock token, monotonic time its begin returned, lock ttl ms) of a `begin` token; a bare
    lock token has no deadline (0.0, 0)."""
    lock, _, rest = token.partition("@")
    began, _, ttl = rest.partition("@")
    return (lock, float(began), int(ttl)) if ttl else (lock, 0.0, 0)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Conversations in Redis; safe with many processes. Build with `await RedisStore.connect(url)`."""

    def __init__(self, client: aioredis.Redis, prefix: str = "orch") -> None:
        self._r = client
        self.prefix = prefix
        self._begin = client.register_script(BEGIN_LUA)
        self._commit = client.register_script(COMMIT_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._claim_timers = client.register_script(CLAIM_TIMERS_LUA)
        self._claim_outbox = client.register_script(CLAIM_OUTBOX_LUA)
        self._status = client.register_script(STATUS_LUA)
        self._retry_outbox = client.register_script(RETRY_OUTBOX_LUA)
        self._finish_outbox = client.register_script(FINISH_OUTBOX_LUA)
        self._settle = client.register_script(SETTLE_LUA)
        self._opt_out = client.register_script(OPT_OUT_LUA)
        # the hot path (begin, commit, release; the outbox sender, conversation records) goes
        # through one persistent pipelined connection
        pool = client.connection_pool
        plain = pool.connection_class.__name__ in ("Connection", "UnixDomainSocketConnection")
        self._lean = LeanRedis.from_pool_kwargs(pool.connection_kwargs, plain=plain)
        # how long a commit sent without an answer may still apply (and is asked about): a Redis
        # pause of up to this long answers the stored reply, a longer one a 503 with nothing saved
        self.settle_seconds = 4.0 * float(pool.connection_kwargs.get("socket_timeout") or 1.0)
        self.side = RedisSide(client, prefix, self._lean)

    @classmethod
    async def connect(cls, url: str, prefix: str = "orch", *, timeout_seconds: float = 1.0) -> RedisStore:
        """Connect and check; StoreUnavailable (fast) when Redis cannot be reached."""
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),  # one reconnect after a dropped pooled connection
            health_check_interval=0,
            max_connections=256,
        )
        store = cls(client, prefix)
        await store.ping()
        return store

    # keys ----------------------------------------------------------------------------
    def _k(self, session_id: str, part: str) -> str:
        return f"{self.prefix}:{{{session_id}}}:{part}"

    def _g(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def _eval(self, script: Any, keys: list[Any], args: list[Any]) -> Awaitable[Any]:
        """A hot-path script call: EVALSHA through the lean transport (`resp.py`; ~10x less CPU
        than redis-py's client), or redis-py's Script when the URL needs TLS."""
        return run_script(self._lean, script, keys, args)

    def _call(self, *args: Any) -> Awaitable[Any]:
        """A plain command, through the lean transport when there is one (as `_eval`)."""
        if self._lean is not None:
            return self._lean.execute(*args)
        return self._r.execute_command(*args)

    @property
    def lean(self) -> LeanRedis | None:
        """The lean transport (`resp.py`), None when the URL needs TLS."""
        return self._lean

    async def _do(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except NoScriptError:
            raise
        except (RedisError, OSError) as exc:
            mapped = self._mapped(exc)
            if type(mapped) is StoreError:  # unexpected: keep the cause
                raise mapped from exc
            raise mapped from None

    def _mapped(self, exc: RedisError | OSError) -> StoreError:
        """The store's error for a Redis failure: StoreUnavailable (unreachable, loading),
        StoreWriteRefused (up, takes no writes), else StoreError."""
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError)):
            return StoreUnavailable(
                f"redis store ({self.prefix}): cannot reach Redis ({type(exc).__name__}: {exc}); "
                "check ORCHESTRATOR_REDIS_URL and that Redis is running"
            )
        reason = write_refusal(exc) if isinstance(exc, ResponseError) else None
        if reason is not None:
            return StoreWriteRefused(
                f"redis store ({self.prefix}): Redis refuses writes ({reason}: {exc}); nothing was written. "
                f"{_REFUSAL_FIX[reason]}", reason,
            )
        return StoreError(f"redis store ({self.prefix}): {type(exc).__name__}: {exc}")

    # the turn ------------------------------------------------------------------------
    async def begin(
        self, session_id: str, dedupe_id: str | None, *, lock_ttl_seconds: float, wait_seconds: float,
        contact: str | None = None,
    ) -> Begin:
        token = secrets.token_hex(8)
        keys = [
            self._k(session_id, "l"),
            self._k(session_id, "s"),
            self._k(session_id, "d"),
            self._g(f"optout:{contact or '-'}"),
            self._k(session_id, "t"),
        ]
        args: list[Any] = [token, max(1, int(lock_ttl_seconds * 1000)), "1" if dedupe_id else "0",
                           delivery_key(dedupe_id) if dedupe_id else "", delivery_tag(dedupe_id) if dedupe_id else "",
                           DEDUPE_SCAN]

        async def attempt() -> Begin | None:
            res = await self._do(self._eval(self._begin, keys, args))
            code = int(res[0])
            if code == 1:
                if len(res) > 2:  # the turn's transcript element, which carries the reply
                    return Begin(duplicate_reply=turn_reply(bytes(res[1])))
                return Begin(duplicate_reply=bytes(res[1]))
            if code != 0:
                return None  # another turn holds the lock
            raw, optout = res[1], res[2]
            # the token handed out also says when the lock was taken: the commit's deadline
            held = f"{token}@{time.monotonic()!r}@{args[1]}"
            try:
                version, data = (parse_session_value(bytes(raw))[::2]) if raw else (0, b"")
            except NewerFormat:
                await self.release(session_id, held)
                raise
            return Begin(session=data or None, version=version, token=held, opted_out=bool(optout))

        return await wait_for_lock(attempt, session_id, wait_seconds, poll_seconds=(0.002, 0.05))

    async def commit(self, session_id: str, token: str, commit: Commit) -> None:
        """Save the turn, or raise (StaleWrite, StoreUnavailable) having saved nothing. A commit that
        was sent but not answered (Redis paused, the connection lost) is settled before this returns:
        it applies only within `settle_seconds` of being sent (its lock's PTTL says so in Redis' own
        clock), and `_settle_commit` finds out whether it did, so a raise always means not saved."""
        token, began, lock_ms = _split_token(token)
        sent = time.monotonic()
        settle_by = sent + self.settle_seconds
        # the lock was taken at most (sent - began) before now: the commit must run within
        # settle_seconds from now, i.e. while its lock has at least this much of its TTL left
        least_pttl = max(0, lock_ms - int((sent - began + self.settle_seconds) * 1000)) if began else 0
        keys = [
            self._k(session_id, "l"),
            self._k(session_id, "s"),
            self._k(session_id, "t"),
            self._k(session_id, "d"),
            self._g("timers"),
            self._g("outbox"),
            self._g("sessions"),
            self._g(f"c:{commit.contact or '-'}"),
        ]
        deduped = bool(commit.dedupe_id) and commit.reply is not None
        # the reply rides in the turn's element, found by the delivery's tag; the hash keeps it
        # only when the turn has no element
        in_hash = deduped and not commit.transcript
        args: list[Any] = [
            token, commit.expect_version, commit.version,
            session_value(commit.version, commit.session, commit.timer.member if commit.timer else None,
                          session_id),
            max(1, int(commit.ttl_seconds)),
            delivery_key(commit.dedupe_id or "") if in_hash else "", (commit.reply or b"") if in_hash else b"",
            max(1, int(commit.dedupe_ttl_seconds)), max(1, int(commit.retention_seconds)),
            commit.timer.member if commit.timer else "", commit.timer.due if commit.timer else 0,
            commit.outbox_due, session_id, commit.updated_at or time.time(), least_pttl,
        ]
        if commit.transcript:
            element = pack_turn(commit.transcript, commit.reply if deduped else None)
            args += [2, delivery_tag(commit.dedupe_id or ""), element] if deduped else [1, element]
        else:
            args.append(0)
        args.append(len(commit.side))
        for put in commit.side:
            put_keys, put_args = put_script_args(self.prefix, put)
            keys += put_keys
            args.append(len(put_keys))
            args += put_args
        for item in commit.outbox:
            sid, _, uniq = item.id.rpartition("|")
            if sid != session_id:
                raise ValueError(f"outbox id {item.id!r} must start with the session id {session_id!r} + '|'")
            keys.append(self._k(session_id, f"o:{uniq}"))
            args += [item.id, item.payload]
        if commit.reminders:  # the timers index outlives the furthest reminder
            now = time.time()
            args.append(len(commit.reminders))
            args.append(max(int(r.due - now) + 86_400 for r in commit.reminders))
            for reminder in commit.reminders:
                args += [reminder.member, reminder.due]
        try:
            res = await self._eval(self._commit, keys, args)
        except NotSent as exc:
            raise self._mapped(exc) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:  # sent, unanswered: it may have run
            res = await self._settle_commit(session_id, token, commit, in_hash, settle_by, exc)
        except RedisError as exc:
            raise self._mapped(exc) from exc
        res = res.decode() if isinstance(res, bytes) else str(res)
        if res == "LATE":
            raise StoreUnavailable(
                f"session {session_id!r}: Redis ran the commit more than {self.settle_seconds} s after it was "
                "sent (paused or overloaded), so it was refused; the turn was not saved, the provider should retry"
            )
        if res == "LOCK":
            raise StaleWrite(
                f"session {session_id!r}: the lock expired before the save and may belong to another "
                "turn now; the turn was not saved (raise ORCHESTRATOR_LOCK_TTL_SECONDS if turns are slow)"
            )
        if res == "VERSION":
            raise StaleWrite(
                f"session {session_id!r}: stored version is not {commit.expect_version} (another turn "
                "saved first); the turn was not saved"
            )

    async def _settle_commit(
        self, session_id: str, token: str, commit: Commit, in_hash: bool, settle_by: float, cause: Exception,
    ) -> bytes:
        """Whether a commit sent without an answer ran ("OK"), else StoreUnavailable: asked again
        (SETTLE_LUA, which fences it off if it has not run) until `settle_by`, after which it can
        no longer run (its deadline)."""
        deduped = bool(commit.dedupe_id) and commit.reply is not None
        keys = [self._k(session_id, "l"), self._k(session_id, "t"), self._k(session_id, "d"),
                self._k(session_id, "s")]
        args = [token, delivery_tag(commit.dedupe_id or "") if deduped and not in_hash else "",
                delivery_key(commit.dedupe_id or "") if in_hash else "", commit.version, DEDUPE_SCAN]
        while True:
            try:
                ran = await self._do(self._eval(self._settle, keys, args))
            except StoreUnavailable:
                if time.monotonic() >= settle_by:
                    raise StoreUnavailable(
                        f"session {session_id!r}: Redis did not answer the commit ({cause}) nor the check after "
                        f"it for {self.settle_seconds} s; the commit can no longer run (its deadline passed), "
                        "the turn was not saved: the provider should retry"
                    ) from None
                await asyncio.sleep(0.02)
                continue
            if int(ran):
                log.warning("session %s: the commit's answer was lost (%s) but it ran; answering its reply",
                            redact_phone(session_id), cause)
                return b"OK"
            raise StoreUnavailable(
                f"session {session_id!r}: Redis did not answer the commit in time ({cause}); it did not run and "
                "now never will (settled): the turn was not saved, the provider should retry"
            )

    async def release(self, session_id: str, token: str) -> None:
        if token:
            await self._do(self._eval(self._release, [self._k(session_id, "l")], [_split_token(token)[0]]))

    async def _session_value(self, session_id: str) -> tuple[int, str, bytes] | None:
        raw = await self._do(self._r.get(self._k(session_id, "s")))
        return parse_session_value(bytes(raw)) if raw else None

    async def load(self, session_id: str) -> bytes | None:
        value = await self._session_value(session_id)
        return value[2] or None if value else None

    async def load_many(self, session_ids: list[str]) -> list[bytes | None]:
        """One pipelined GET per id."""
        if not session_ids:
            return []
        pipe = self._r.pipeline(transaction=False)
        for sid in session_ids:
            pipe.get(self._k(sid, "s"))
        rows = await self._do(pipe.execute())
        return [parse_session_value(bytes(raw))[2] or None if raw else None for raw in rows]

    # opt-outs ------------------------------------------------------------------------
    async def set_opt_out(self, contact: str, opted_out: bool) -> None:
        key = self._g(f"optout:{contact}")
        if opted_out:
            await self._do(self._eval(self._opt_out, [key], [str(int(time.time())), OPT_OUT_TTL_SECONDS]))
        else:
            await self._do(self._r.delete(key))  # DEL is allowed at maxmemory

    async def is_opted_out(self, contact: str) -> bool:
        return bool(await self._do(self._call("EXISTS", self._g(f"optout:{contact}"))))

    # flow revisions ------------------------------------------------------------------
    async def put_revision(self, flow_id: str, revision: str, source: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.set(self._g(f"rev:{revision}"), source.encode(), ex=REVISION_TTL_SECONDS)
        pipe.zadd(self._g(f"flow:{flow_id}"), {revision: time.time()}, nx=True)
        pipe.expire(self._g(f"flow:{flow_id}"), REVISION_TTL_SECONDS)
        await self._do(pipe.execute())

    async def get_revision(self, revision: str) -> str | None:
        data = await self._do(self._r.get(self._g(f"rev:{revision}")))
        return bytes(data).decode() if data else None

    async def latest_revision(self, flow_id: str) -> str | None:
        items = await self._do(self._r.zrange(self._g(f"flow:{flow_id}"), -1, -1))
        return bytes(items[0]).decode() if items else None

    async def list_revisions(self, flow_id: str) -> list[str]:
        items = await self._do(self._r.zrange(self._g(f"flow:{flow_id}"), 0, -1))
        return [bytes(i).decode() for i in items]

    # timers and outbox ---------------------------------------------------------------
    async def claim_due_timers(self, now: float, limit: int = 100) -> list[str]:
        res = await self._do(self._eval(self._claim_timers, [self._g("timers")], [now, limit]))
        return [bytes(m).decode() for m in res]

    async def put_timer(self, member: str, due: float) -> None:
        await self._do(self._r.zadd(self._g("timers"), {member: due}))

    async def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxClaim]:
        res = await self._do(
            self._eval(self._claim_outbox, [self._g("outbox"), self._g("outbox:leases")],
                       [now, limit, now + lease_seconds, self.prefix])
        )
        return [
            OutboxClaim(bytes(res[i]).decode(), bytes(res[i + 1]), None if int(res[i + 2]) < 0 else bool(res[i + 2]),
                        reclaimed=int(res[i + 3]) > 1)
            for i in range(0, len(res), 4)
        ]

    def _outbox_key(self, item_id: str) -> str:
        sid, _, uniq = item_id.rpartition("|")
        return self._k(sid, f"o:{uniq}")

    async def ack_outbox(self, item_id: str) -> None:
        keys = [self._g("outbox"), self._outbox_key(item_id), self._g("outbox:leases"), self._g("outbox:failed")]
        await self._do(self._eval(self._finish_outbox, keys, [item_id, "", 0, "", 1, 0, "", 1]))

    async def finish_outbox(
        self, item_id: str, status: str, error_code: str | None = None, message_ids: Sequence[str] = (),
        failure: bytes = b"",
    ) -> None:
        keys = [self._g("outbox"), self._outbox_key(item_id), self._g("outbox:leases"), self._g("outbox:failed"),
                self._g(f"st:{item_id}")]
        keys += [self._g(f"st:{m}") for m in message_ids]
        args = [item_id, status, status_rank(status), error_code or "", STATUS_TTL_SECONDS, status_rank("sent"),
                failure, FAILED_OUTBOX_KEPT]
        await self._do(self._eval(self._finish_outbox, keys, args))

    async def retry_outbox(self, item_id: str, payload: bytes, due: float) -> None:
        await self._do(self._eval(self._retry_outbox,
                                  [self._g("outbox"), self._outbox_key(item_id), self._g("outbox:leases")],
                                  [payload, due, item_id]))

    async def failed_outbox(self, limit: int = 100) -> list[bytes]:
        return [bytes(v) for v in await self._do(self._call("LRANGE", self._g("outbox:failed"), 0, limit - 1))]

    # delivery statuses ---------------------------------------------------------------
    async def record_status(self, message_id: str, status: str, error_code: str | None = None) -> str:
        res = await self._do(
            self._eval(self._status, [self._g(f"st:{message_id}")],
                       [status, status_rank(status), error_code or "", STATUS_TTL_SECONDS])
        )
        return bytes(res).decode() if isinstance(res, bytes) else str(res)

    async def get_status(self, message_id: str) -> tuple[str, str | None] | None:
        s, e = await self._do(self._r.hmget(self._g(f"st:{message_id}"), ["s", "e"]))
        if not s:
            return None
        return bytes(s).decode(), (bytes(e).decode() or None) if e else None

    # records -------------------------------------------------------------------------
    async def get_transcript(self, session_id: str) -> list[bytes]:
        """Every entry, in order (each stored element holds one turn's entries)."""
        out: list[bytes] = []
        for element in await self._do(self._r.lrange(self._k(session_id, "t"), 0, -1)):
            out.extend(unpack_turn(bytes(element)))
        return out

    async def trim_transcript(self, session_id: str, older_than: float) -> int:
        """Drop the leading turns whose entries are all older than `older_than` (with the tags of
        their deliveries); returns the entries dropped. Commits only append, so trimming the head
        never loses a new turn."""
        key = self._k(session_id, "t")
        dropped_elements = dropped = tags = 0
        for element in await self._do(self._r.lrange(key, 0, -1)):
            if is_delivery_tag(bytes(element)):
                tags += 1  # goes with the turn after it
                continue
            entries = unpack_turn(bytes(element))
            if any(entry_time(e) >= older_than for e in entries):
                break
            dropped_elements += tags + 1
            tags = 0
            dropped += len(entries)
        if dropped_elements:
            await self._do(self._r.ltrim(key, dropped_elements, -1))
        return dropped

    @property
    def client(self) -> aioredis.Redis:
        """The store's Redis client (same pool, timeouts, retry policy); the side store (`self.side`)
        writes through it and the lean transport."""
        return self._r

    async def list_sessions(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]:
        items = await self._do(
            self._r.zrevrange(self._g("sessions"), offset, offset + limit - 1, withscores=True)
        )
        return [SessionInfo(bytes(m).decode(), float(s)) for m, s in items]

    async def _contact_sessions(self, contact: str) -> list[str]:
        return sorted(bytes(m).decode() for m in await self._do(self._r.smembers(self._g(f"c:{contact}"))))

    async def export_contact(self, contact: str) -> ContactExport:
        sids = await self._contact_sessions(contact)
        sessions: dict[str, bytes] = {}
        transcripts: dict[str, list[bytes]] = {}
        for sid in sids:
            data = await self.load(sid)
            if data is not None:
                sessions[sid] = data
            transcripts[sid] = await self.get_transcript(sid)
        return ContactExport(
            contact=contact, opted_out=await self.is_opted_out(contact), sessions=sessions,
            transcripts=transcripts,
        )

    async def erase_contact(self, contact: str) -> int:
        removed = 0
        for sid in await self._contact_sessions(contact):
            value = await self._session_value(sid)
            timer = f"{sid}|{value[1]}" if value and value[1] else None
            keys: list[bytes] = []
            pattern = f"{_glob_escape(self.prefix)}:{{{_glob_escape(sid)}}}:*"
            async for key in self._r.scan_iter(match=pattern, count=500):
                keys.append(key)
            pipe = self._r.pipeline(transaction=False)
            if timer:
                pipe.zrem(self._g("timers"), timer)
            pipe.zrem(self._g("sessions"), sid)
            for key in keys:
                name = bytes(key).decode()
                if ":o:" in name:
                    pipe.zrem(self._g("outbox"), f"{sid}|{name.rpartition(':o:')[2]}")
            if keys:
                pipe.delete(*keys)
            await self._do(pipe.execute())
            removed += len(keys)
        removed += int(await self._do(self._r.delete(self._g(f"c:{contact}"))))
        # given-up sends name the contact and hold the texts: they go too (LREM by value is safe
        # beside a concurrent LPUSH of another entry)
        failed = self._g("outbox:failed")
        for entry in await self._do(self._r.lrange(failed, 0, -1)):
            if payload_contact(bytes(entry)) == contact:
                removed += int(await self._do(self._r.lrem(failed, 0, entry)))
        return removed

    async def ping(self) -> None:
        await self._do(self._r.ping())

    async def check_writes(self) -> None:
        """A write probe (one small key with a TTL): StoreWriteRefused when Redis takes no writes
        (maxmemory, read-only replica, disk error), which PING alone does not show."""
        await self._do(self._call("SET", self._g("health"), "1", "PX", 60_000))

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
        await self._r.aclose()
