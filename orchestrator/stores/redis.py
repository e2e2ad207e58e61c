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

That is the single-Redis layout (`redis://`, `redis+sentinel://`). On a Redis Cluster
(`redis+cluster://`) the same keys are split into hash-tagged buckets (`layout.py`): a
conversation's keys are `orch:{<bucket tag>}:{sid}:...` and each shared index is one key per
bucket (`orch:{<bucket tag>}:timers`, ...), so every script touches one slot; the pollers claim
bucket by bucket. Provider message statuses, flow revisions and the health probe are single keys
of no bucket.

The scripts are lua/*.lua (`scripts.lua`), the values' layouts `codecs`. Every key gets a TTL.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
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
from orchestrator.stores.layout import BUCKETS, Layout
from orchestrator.stores.resp import LeanCluster, LeanRedis, NotSent, run_script
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


# WAIT after a commit (ORCHESTRATOR_REDIS_WAIT_REPLICAS): at most this long (ms), and after a WAIT
# the replicas did not answer in time, none for this long (s)
REPLICA_WAIT_MS = 50
REPLICA_WAIT_OFF_SECONDS = 5.0

# with buckets, a claim of the outbox right after this process's turns asks their buckets only, and
# every bucket at least this often (items of other processes, retries coming due)
OUTBOX_SWEEP_SECONDS = 0.25

# a bucket polled by one process is left to it for this long (claim_timers.lua): several processes
# share the buckets, and a dead poller's buckets are taken over this soon
POLL_LEASE_MS = 500


def _parse_hosts(url: str) -> tuple[list[tuple[str, int]], str | None, str | None, str]:
    """(hosts, username, password, path without its '/') of `scheme://[user:pass@]h:p[,h:p...]/path`."""
    from urllib.parse import unquote

    rest = url.partition("://")[2]
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    username = password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, colon, secret = auth.partition(":")
        username, password = (unquote(user) or None, unquote(secret)) if colon else (None, unquote(user))
    hosts: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":") if ":" in part else (part.strip(), "", "")
        if not host and not port:
            continue
        try:
            hosts.append((host or "127.0.0.1", int(port or 6379)))
        except ValueError:
            raise StoreError(f"ORCHESTRATOR_REDIS_URL: {part!r} is not host:port") from None
    if not hosts:
        raise StoreError("ORCHESTRATOR_REDIS_URL names no host: give host:port[,host:port...]")
    return hosts, username, password, unquote(path)


def _failed_at(entry: bytes) -> float:
    try:
        value = msgspec.msgpack.decode(entry)
    except msgspec.DecodeError:
        return 0.0
    return float(value.get("failed_at") or 0.0) if isinstance(value, dict) else 0.0


class RedisStore:
    """Conversations in Redis; safe with many processes. Build with `await RedisStore.connect(url)`:
    `redis://` / `rediss://` / `unix://` (one Redis), `redis+cluster://host:port[,host:port...]`
    (a Redis Cluster, bucketed layout), `redis+sentinel://host:port[,host:port...]/<service>`
    (the primary Sentinel names, followed through a failover)."""

    def __init__(
        self, client: Any, prefix: str = "orch", *, buckets: int = 0, cluster: bool = False,
        lean: LeanRedis | LeanCluster | bool | None = True, timeout_seconds: float | None = None,
        wait_replicas: int = 0,
    ) -> None:
        self._r = client
        self.prefix = prefix
        self.layout = Layout(prefix, buckets)
        self.cluster = cluster  # scripts must keep to one slot (else, on one node, they may span buckets)
        self.wait_replicas = wait_replicas
        self._wait_off_until = 0.0  # replicas did not answer a WAIT: not waiting until then
        self._warned_foreign = False
        self._poll_token = secrets.token_hex(8)
        self._poll_turn = 0
        # buckets this process queued outbox items in since its last claim: a claim right after a
        # turn asks those only; every bucket is swept at least OUTBOX_SWEEP_SECONDS apart
        self._outbox_dirty: set[int] = set()
        self._outbox_sweep_at = 0.0
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
        # through one persistent pipelined connection (per node on a cluster)
        if lean is True:
            pool = client.connection_pool
            plain = pool.connection_class.__name__ in ("Connection", "UnixDomainSocketConnection")
            lean = LeanRedis.from_pool_kwargs(pool.connection_kwargs, plain=plain)
            timeout_seconds = timeout_seconds or float(pool.connection_kwargs.get("socket_timeout") or 1.0)
        self._lean: LeanRedis | LeanCluster | None = lean or None
        # how long a commit sent without an answer may still apply (and is asked about): a Redis
        # pause of up to this long answers the stored reply, a longer one a 503 with nothing saved
        self.settle_seconds = 4.0 * float(timeout_seconds or 1.0)
        self.side = RedisSide(client, self.layout, self._lean, cluster=cluster)

    @classmethod
    async def connect(
        cls, url: str, prefix: str = "orch", *, timeout_seconds: float = 1.0, wait_replicas: int = 0,
    ) -> RedisStore:
        """Connect and check; StoreUnavailable (fast) when Redis cannot be reached."""
        common: dict[str, Any] = {
            "socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds,
            "health_check_interval": 0,
        }
        scheme = url.partition("://")[0].lower()
        store: RedisStore
        if scheme == "redis+cluster":
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            seeds, username, password, _ = _parse_hosts(url)
            client: Any = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in seeds], username=username, password=password,
                retry=Retry(NoBackoff(), 1), max_connections=256, **common,
            )
            lean: LeanRedis | LeanCluster = LeanCluster(seeds, username=username, password=password,
                                                        timeout=timeout_seconds)
            store = cls(client, prefix, buckets=BUCKETS, cluster=True, lean=lean, timeout_seconds=timeout_seconds,
                        wait_replicas=wait_replicas)
        elif scheme == "redis+sentinel":
            from redis.asyncio.sentinel import Sentinel

            seeds, username, password, service = _parse_hosts(url)
            if not service:
                raise StoreError("ORCHESTRATOR_REDIS_URL: redis+sentinel://host:port[,host:port]/<service name> "
                                 "names no service (the name in Sentinel's `sentinel monitor <name> ...`)")
            sentinel = Sentinel(seeds, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds)
            client = sentinel.master_for(service, username=username, password=password,
                                         retry=Retry(NoBackoff(), 1), max_connections=256, **common)

            async def primary() -> tuple[str, int]:
                host, port = await sentinel.discover_master(service)
                return str(host), int(port)

            lean = LeanRedis(username=username, password=password, timeout=timeout_seconds, resolve=primary)
            store = cls(client, prefix, lean=lean, timeout_seconds=timeout_seconds, wait_replicas=wait_replicas)
        else:
            client = aioredis.Redis.from_url(
                url, retry=Retry(NoBackoff(), 1),  # one reconnect after a dropped pooled connection
                max_connections=256, **common,
            )
            store = cls(client, prefix, wait_replicas=wait_replicas)
        try:
            await store.ping()
        except StoreError:
            await store.close()
            raise
        return store

    # keys ----------------------------------------------------------------------------
    def _k(self, session_id: str, part: str) -> str:
        return self.layout.conv(session_id, part)

    def _g(self, name: str, of: str) -> str:
        """The shared index `name` of the bucket of `of` (a session id or contact)."""
        return self.layout.shared(name, of)

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
    def lean(self) -> LeanRedis | LeanCluster | None:
        """The lean transport (`resp.py`), None when the URL needs TLS."""
        return self._lean

    async def _do(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except NoScriptError:
            raise
        except (RedisError, OSError, RedisClusterException) as exc:
            mapped = self._mapped(exc)
            if type(mapped) is StoreError:  # unexpected: keep the cause
                raise mapped from exc
            raise mapped from None

    def _mapped(self, exc: RedisError | OSError | RedisClusterException) -> StoreError:
        """The store's error for a Redis failure: StoreUnavailable (unreachable, loading, a cluster
        without a slot's node or mid-move), StoreWriteRefused (up, takes no writes), else StoreError."""
        if isinstance(exc, (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError, ClusterDownError,
                            TryAgainError, ClusterError, RedisClusterException)):
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
        head = self.layout.head(session_id)  # both layouts: `<head>:{<sid>}:<part>`, `<head>:<index>`
        keys = [
            f"{head}:{{{session_id}}}:l",
            f"{head}:{{{session_id}}}:s",
            f"{head}:{{{session_id}}}:d",
            f"{head}:optout:{contact or '-'}",
            f"{head}:{{{session_id}}}:t",
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
                if contact and self._foreign(session_id, contact):  # its opt-out is in another slot
                    optout = await self.is_opted_out(contact)
            except (NewerFormat, StoreError):
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
        head = self.layout.head(session_id)  # as in `begin`
        keys = [
            f"{head}:{{{session_id}}}:l",
            f"{head}:{{{session_id}}}:s",
            f"{head}:{{{session_id}}}:t",
            f"{head}:{{{session_id}}}:d",
            f"{head}:timers",
            f"{head}:outbox",
            f"{head}:sessions",
            f"{head}:c:{commit.contact or '-'}",
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
        # a side write of another bucket (never the runtime's: a record shares its session's bucket)
        # cannot ride in a cluster's single-slot commit: it follows it
        riding, after = commit.side, []
        if self.cluster and commit.side:
            riding = [p for p in commit.side if self.layout.side(p.key).startswith(head + ":")]
            after = [p for p in commit.side if p not in riding]
        args.append(len(riding))
        for put in riding:
            put_keys, put_args = put_script_args(self.layout, put)
            keys += put_keys
            args.append(len(put_keys))
            args += put_args
        for item in commit.outbox:
            sid, _, uniq = item.id.rpartition("|")
            if sid != session_id:
                raise ValueError(f"outbox id {item.id!r} must start with the session id {session_id!r} + '|'")
            keys.append(f"{head}:{{{session_id}}}:o:{uniq}")
            args += [item.id, item.payload]
        if commit.reminders:  # the timers index outlives the furthest reminder
            now = time.time()
            args.append(len(commit.reminders))
            args.append(max(int(r.due - now) + 86_400 for r in commit.reminders))
            for reminder in commit.reminders:
                args += [reminder.member, reminder.due]
        if commit.outbox and self.layout.n:
            self._outbox_dirty.add(self.layout.bucket(session_id))
        try:
            if self.wait_replicas and self._lean is not None:
                res = await self._commit_and_wait(session_id, keys, args)
            else:
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
        for put in after:
            await self.side.put_indexed(put.key, put.fields, put.indexes, put.member, put.score,
                                        ttl_seconds=put.ttl_seconds, drop=put.drop)
        if commit.contact and self._foreign(session_id, commit.contact):  # the contact's set, in its slot
            pipe = self._r.pipeline(transaction=False)
            pipe.sadd(self._g(f"c:{commit.contact}", commit.contact), session_id)
            pipe.expire(self._g(f"c:{commit.contact}", commit.contact), max(1, int(commit.retention_seconds)))
            await self._do(pipe.execute())

    def _foreign(self, session_id: str, contact: str) -> bool:
        """With buckets: whether a contact key hashes to another bucket than its session (a session id
        not ending with the contact's own id). Never with the runtime's ids (`<business>:<contact>`);
        if it happens, the opt-out and the contact's set cost a call of their own, and it is logged once."""
        if not self.layout.n or self.layout.bucket(contact) == self.layout.bucket(session_id):
            return False
        if not self._warned_foreign:
            self._warned_foreign = True
            log.warning("session %s and its contact hash to different buckets (layout.bucket_of): its opt-out "
                        "check and contact index take an extra call per turn", redact_phone(session_id))
        return True

    async def _commit_and_wait(self, session_id: str, keys: list[Any], args: list[Any]) -> Any:
        """The commit and `WAIT <replicas> <ms>` written together (one round trip): the reply comes
        once the turn reached `wait_replicas` replicas, or after the wait. WAIT blocks the one
        connection it runs on, so when the replicas do not answer (none left after a failover) the
        store stops waiting for REPLICA_WAIT_OFF_SECONDS, saying so (turns are then on the primary only)."""
        assert self._lean is not None
        if time.monotonic() < self._wait_off_until:
            return await self._eval(self._commit, keys, args)
        wait_ms = max(1, min(REPLICA_WAIT_MS, int(self.settle_seconds * 1000 / 20)))
        acked: Any = None
        if isinstance(self._lean, LeanCluster):  # WAIT on the connection that wrote, after redirects
            res = await self._lean.evalsha(self._commit.sha, self._commit.script, keys, args)
            owner = self._lean.owner(keys[0])
            if owner is not None:
                try:
                    acked = await self._lean.node(owner).execute("WAIT", self.wait_replicas, wait_ms)
                except RedisError:
                    acked = None
        else:
            commit = asyncio.ensure_future(self._lean.evalsha(self._commit.sha, self._commit.script, keys, args))
            waited = asyncio.ensure_future(self._lean.execute("WAIT", self.wait_replicas, wait_ms))
            try:
                res = await commit
            finally:
                try:
                    acked = await waited
                except RedisError:
                    acked = None
        if res in (b"OK", "OK") and acked is not None and int(acked) < self.wait_replicas:
            self._wait_off_until = time.monotonic() + REPLICA_WAIT_OFF_SECONDS
            log.warning("session %s: the turn reached %s of %d replicas within %d ms: saved on the primary only; "
                        "not waiting for replicas for %d s (ORCHESTRATOR_REDIS_WAIT_REPLICAS)",
                        redact_phone(session_id), acked, self.wait_replicas, wait_ms, REPLICA_WAIT_OFF_SECONDS)
        return res

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
        raw = await self._do(self._call("GET", self._k(session_id, "s")))
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
        key = self._g(f"optout:{contact}", contact)
        if opted_out:
            await self._do(self._eval(self._opt_out, [key], [str(int(time.time())), OPT_OUT_TTL_SECONDS]))
        else:
            await self._do(self._r.delete(key))  # DEL is allowed at maxmemory

    async def is_opted_out(self, contact: str) -> bool:
        return bool(await self._do(self._call("EXISTS", self._g(f"optout:{contact}", contact))))

    # flow revisions ------------------------------------------------------------------
    async def put_revision(self, flow_id: str, revision: str, source: str) -> None:
        # two keys of no bucket: on a cluster not one transaction, the source first (a revision is
        # listed only once its source is there)
        pipe = self._r.pipeline(transaction=not self.cluster)
        pipe.set(self.layout.plain(f"rev:{revision}"), source.encode(), ex=REVISION_TTL_SECONDS)
        pipe.zadd(self.layout.plain(f"flow:{flow_id}"), {revision: time.time()}, nx=True)
        pipe.expire(self.layout.plain(f"flow:{flow_id}"), REVISION_TTL_SECONDS)
        await self._do(pipe.execute())

    async def get_revision(self, revision: str) -> str | None:
        data = await self._do(self._r.get(self.layout.plain(f"rev:{revision}")))
        return bytes(data).decode() if data else None

    async def latest_revision(self, flow_id: str) -> str | None:
        items = await self._do(self._r.zrange(self.layout.plain(f"flow:{flow_id}"), -1, -1))
        return bytes(items[0]).decode() if items else None

    async def list_revisions(self, flow_id: str) -> list[str]:
        items = await self._do(self._r.zrange(self.layout.plain(f"flow:{flow_id}"), 0, -1))
        return [bytes(i).decode() for i in items]

    # timers and outbox ---------------------------------------------------------------
    def _poll_order(self) -> list[int]:
        """The buckets in this pass's order: each pass starts one bucket further, so a process never
        favours a bucket and several processes start at different ones."""
        n = self.layout.n
        self._poll_turn = (self._poll_turn + 1) % n
        return [(self._poll_turn + i) % n for i in range(n)]

    async def claim_due_timers(self, now: float, limit: int = 100) -> list[str]:
        if not self.layout.n:
            res = await self._do(self._eval(self._claim_timers, [self.layout.plain("timers")], [now, limit]))
            return [bytes(m).decode() for m in res]
        heads = self.layout.heads
        calls = [self._eval(self._claim_timers, [f"{heads[b]}:timers", f"{heads[b]}:lease:timers"],
                            [now, limit, self._poll_token, POLL_LEASE_MS]) for b in self._poll_order()]
        return [bytes(m).decode() for res in await self._gather(calls) for m in res]

    async def _gather(self, calls: list[Awaitable[Any]]) -> list[Any]:
        """Every bucket's call at once (one write per node); the first failure is raised once all ended."""
        results = await asyncio.gather(*(self._do(c) for c in calls), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    async def put_timer(self, member: str, due: float) -> None:
        await self._do(self._r.zadd(self._g("timers", member.rpartition("|")[0]), {member: due}))

    async def drop_timer(self, member: str) -> None:
        await self._do(self._r.zrem(self._g("timers", member.rpartition("|")[0]), member))

    async def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxClaim]:
        if not self.layout.n:
            calls = [self._eval(self._claim_outbox, [self.layout.plain("outbox"), self.layout.plain("outbox:leases")],
                                [now, limit, now + lease_seconds, self.prefix])]
        else:
            heads = self.layout.heads
            dirty, self._outbox_dirty = self._outbox_dirty, set()
            started = time.monotonic()
            if dirty and started < self._outbox_sweep_at:
                order = sorted(dirty)
            else:
                order = self._poll_order()
                self._outbox_sweep_at = started + OUTBOX_SWEEP_SECONDS
            calls = [self._eval(self._claim_outbox,
                                [f"{heads[b]}:outbox", f"{heads[b]}:outbox:leases", f"{heads[b]}:lease:outbox"],
                                [now, limit, now + lease_seconds, heads[b], self._poll_token, POLL_LEASE_MS, b,
                                 self.layout.n])
                     for b in order]
        return [
            OutboxClaim(bytes(res[i]).decode(), bytes(res[i + 1]), None if int(res[i + 2]) < 0 else bool(res[i + 2]),
                        reclaimed=int(res[i + 3]) > 1)
            for res in await self._gather(calls) for i in range(0, len(res), 4)
        ]

    def _outbox_key(self, item_id: str) -> str:
        sid, _, uniq = item_id.rpartition("|")
        return self._k(sid, f"o:{uniq}")

    def _item_indexes(self, item_id: str) -> tuple[str, str, str]:
        """The outbox zset, leases hash and failed list of an item's bucket."""
        sid = item_id.rpartition("|")[0]
        return self._g("outbox", sid), self._g("outbox:leases", sid), self._g("outbox:failed", sid)

    async def ack_outbox(self, item_id: str) -> None:
        outbox, leases, failed = self._item_indexes(item_id)
        keys = [outbox, self._outbox_key(item_id), leases, failed]
        await self._do(self._eval(self._finish_outbox, keys, [item_id, "", 0, "", 1, 0, "", 1]))

    async def finish_outbox(
        self, item_id: str, status: str, error_code: str | None = None, message_ids: Sequence[str] = (),
        failure: bytes = b"",
    ) -> None:
        outbox, leases, failed = self._item_indexes(item_id)
        keys = [outbox, self._outbox_key(item_id), leases, failed, self.layout.status(item_id)]
        provider = [self.layout.status(m) for m in message_ids]
        if self.cluster and provider:
            # the provider's message ids are keys of other slots: recorded first (never backwards,
            # so again after a crash is harmless), then the item finished in its own slot
            await self._gather([self._eval(self._status, [key], ["sent", status_rank("sent"), "", STATUS_TTL_SECONDS])
                                for key in provider])
        else:
            keys += provider
        args = [item_id, status, status_rank(status), error_code or "", STATUS_TTL_SECONDS, status_rank("sent"),
                failure, FAILED_OUTBOX_KEPT]
        await self._do(self._eval(self._finish_outbox, keys, args))

    async def retry_outbox(self, item_id: str, payload: bytes, due: float) -> None:
        outbox, leases, _ = self._item_indexes(item_id)
        await self._do(self._eval(self._retry_outbox, [outbox, self._outbox_key(item_id), leases],
                                  [payload, due, item_id]))

    async def failed_outbox(self, limit: int = 100) -> list[bytes]:
        keys = self.layout.every("outbox:failed")
        lists = await self._gather([self._call("LRANGE", key, 0, limit - 1) for key in keys])
        entries = [bytes(v) for rows in lists for v in rows]
        if len(lists) > 1:
            entries.sort(key=_failed_at, reverse=True)
        return entries[:limit]

    # delivery statuses ---------------------------------------------------------------
    async def record_status(self, message_id: str, status: str, error_code: str | None = None) -> str:
        res = await self._do(
            self._eval(self._status, [self.layout.status(message_id)],
                       [status, status_rank(status), error_code or "", STATUS_TTL_SECONDS])
        )
        return bytes(res).decode() if isinstance(res, bytes) else str(res)

    async def get_status(self, message_id: str) -> tuple[str, str | None] | None:
        s, e = await self._do(self._call("HMGET", self.layout.status(message_id), "s", "e"))
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

    @property
    def bucket_count(self) -> int:
        """Buckets of the layout (0: the single-Redis layout): `list_sessions(bucket=)` pages one."""
        return self.layout.n

    async def list_sessions(self, limit: int = 100, offset: int = 0, *, bucket: int | None = None) -> list[SessionInfo]:
        """Newest first; with buckets, merged over them, or of one `bucket` (the retention job pages
        bucket by bucket: a merged page costs offset + limit rows per bucket)."""
        keys = self.layout.every("sessions") if bucket is None else [f"{self.layout.heads[bucket]}:sessions"]
        if len(keys) == 1:
            items = await self._do(self._r.zrevrange(keys[0], offset, offset + limit - 1, withscores=True))
            return [SessionInfo(bytes(m).decode(), float(s)) for m, s in items]
        # each bucket's newest offset + limit, merged
        pages = await self._gather([self._r.zrevrange(k, 0, offset + limit - 1, withscores=True) for k in keys])
        rows = sorted(((float(sc), bytes(m).decode()) for page in pages for m, sc in page), reverse=True)
        return [SessionInfo(m, sc) for sc, m in rows[offset : offset + limit]]

    async def _contact_sessions(self, contact: str) -> list[str]:
        return sorted(bytes(m).decode() for m in await self._do(self._r.smembers(self._g(f"c:{contact}", contact))))

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
            async for key in self._scan(self.layout.match_conv(sid), self._k(sid, "s")):
                keys.append(key)
            pipe = self._r.pipeline(transaction=False)
            if timer:
                pipe.zrem(self._g("timers", sid), timer)
            pipe.zrem(self._g("sessions", sid), sid)
            for key in keys:
                name = bytes(key).decode()
                if ":o:" in name:
                    pipe.zrem(self._g("outbox", sid), f"{sid}|{name.rpartition(':o:')[2]}")
            if keys:
                pipe.delete(*keys)
            await self._do(pipe.execute())
            removed += len(keys)
        removed += int(await self._do(self._r.delete(self._g(f"c:{contact}", contact))))
        # given-up sends name the contact and hold the texts: they go too (LREM by value is safe
        # beside a concurrent LPUSH of another entry)
        failed = self._g("outbox:failed", contact)
        for entry in await self._do(self._r.lrange(failed, 0, -1)):
            if payload_contact(bytes(entry)) == contact:
                removed += int(await self._do(self._r.lrem(failed, 0, entry)))
        return removed

    async def ping(self) -> None:
        await self._do(self._r.ping())

    async def check_writes(self) -> None:
        """A write probe (one small key with a TTL): StoreWriteRefused when Redis takes no writes
        (maxmemory, read-only replica, disk error), which PING alone does not show."""
        if not self.cluster:
            await self._do(self._call("SET", self.layout.plain("health"), "1", "PX", 60_000))
            return
        # one probe per shard: a bucket's key on each node that serves buckets
        await self._gather([self._call("SET", f"{head}:health", "1", "PX", 60_000) for head in self._shard_heads()])

    def _shard_heads(self) -> list[str]:
        """One bucket head per node (from the lean transport's slot map), every head before it is read."""
        lean = self._lean
        if not isinstance(lean, LeanCluster) or not any(lean.owner(h) for h in self.layout.heads[:1]):
            return list(self.layout.heads)
        seen: dict[Any, str] = {}
        for head in self.layout.heads:
            seen.setdefault(lean.owner(f"{head}:health"), head)
        return list(seen.values())

    def _scan(self, pattern: str, near: str) -> Any:
        """SCAN for `pattern`: on a cluster only on the node serving `near`'s slot (every key of one
        conversation is on it)."""
        if self.cluster:
            node = self._r.get_node_from_key(near)
            return self._r.scan_iter(match=pattern, count=500, target_nodes=node)
        return self._r.scan_iter(match=pattern, count=500)

    async def close(self) -> None:
        if self._lean is not None:
            await self._lean.close()
        await self._r.aclose()
