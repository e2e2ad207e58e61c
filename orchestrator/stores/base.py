"""The `SessionStore` contract: what the turn pipeline needs from storage, and nothing more.

The contract is a few small stores (`TurnStore`, `TimerStore`, `OutboxStore`, `StatusStore`,
`ContactStore`, `RecordStore`, `RevisionStore`, `HealthStore`); a backend (`SessionStore`) keeps
them all over one storage with its own side store, so one commit writes to several atomically.
Two backends: `memory.MemoryStore` (embedded default, one process) and `redis.RedisStore`
(several processes); `factory.open_store` picks one. One contract test suite runs against both.

A turn is two calls:

    b = await store.begin(sid, dedupe_id, lock_ttl_seconds=10, wait_seconds=5)
    if b.duplicate_reply is not None: ...           # same delivery again: same answer
    ...engine.turn...
    await store.commit(sid, b.token, Commit(...))   # StaleWrite if the lock was lost

`begin` = dedupe check + lock + load + opt-out flag (Redis: one round trip);
`commit` = fencing check + save + transcript + dedupe reply + outbox + timer + side writes
(the conversation record at its first and last turn) + unlock (Redis: one round trip). Values
are opaque bytes (msgpack of model structs); the store only reads the session's `version`,
which the caller passes explicitly.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar, runtime_checkable

import msgspec

from orchestrator.errors import LockTimeout, NewerFormat

T = TypeVar("T")

# How long what the stores keep lives, whatever the backend (a turn's own values take their TTLs
# from the flow and the settings: `Commit`).
OPT_OUT_TTL_SECONDS = 10 * 365 * 86400  # an opt-out outlives everything else, but still has a TTL
REVISION_TTL_SECONDS = 400 * 86400
STATUS_TTL_SECONDS = 30 * 86400  # delivery statuses and the failed-send list

# Delivery statuses never move backwards; failed / undelivered are terminal.
STATUS_RANK: dict[str, int] = {
    "accepted": 0, "scheduled": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5,
    "failed": 9, "undelivered": 9, "canceled": 9,
}


# Stored formats (docs/ARCHITECTURE.md, "Stored formats"): the newest format of each kind of
# stored value this code reads. A msgpack map carries its format in its `fmt` field (absent = 1,
# so format-1 values stay byte for byte what the first release wrote); a value of a newer format
# is refused (NewerFormat: 503, or left for a newer process), never misread.
FORMATS: dict[str, int] = {"session": 1, "reply": 1, "outbox": 1}


def require_format(kind: str, found: int) -> None:
    """NewerFormat when a stored `kind` value's format is newer than this code reads."""
    known = FORMATS[kind]
    if found > known:
        raise NewerFormat(
            f"a stored {kind} is in format {found}, this process reads up to {known}: a newer release "
            "wrote it; left for a newer process (finish the rolling upgrade)"
        )


def status_rank(status: str) -> int:
    return STATUS_RANK.get(status.lower(), 0)


class Begin(msgspec.Struct, kw_only=True):
    duplicate_reply: bytes | None = None  # the stored reply of this delivery: answer it again
    session: bytes | None = None  # the stored session, None for a new conversation
    version: int = 0  # the stored session's version (0 = none): pass it to Commit.expect_version
    token: str = ""  # the lock token ("" when duplicate: no lock was taken)
    opted_out: bool = False


class TimerSet(msgspec.Struct, frozen=True):
    due: float  # epoch seconds
    member: str  # what `claim_due_timers` returns, e.g. "<session id>|<turns>"


FAILED_OUTBOX_KEPT = 1000  # given-up sends kept for GET /api/outbox/failed


async def wait_for_lock(
    attempt: Callable[[], Awaitable[T | None]], session_id: str, wait_seconds: float, *,
    poll_seconds: tuple[float, float] = (0.002, 0.05),
) -> T:
    """`attempt()` until it gives a result (None: another turn holds the session's lock), polling
    from poll_seconds[0] up to poll_seconds[1] apart; LockTimeout after `wait_seconds`. Within one
    process the runtime's SessionGates queue a session's turns, so this polls only across processes."""
    deadline = time.monotonic() + wait_seconds
    delay, most = poll_seconds
    while True:
        result = await attempt()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise LockTimeout(
                f"session {session_id!r}: another turn held the lock for more than {wait_seconds} s; "
                "the provider should retry (raise ORCHESTRATOR_LOCK_WAIT_SECONDS if turns are slow)"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, most)


class OutboxPut(msgspec.Struct, frozen=True):
    id: str  # unique, the provider idempotency key of this send
    payload: bytes


class SidePut(msgspec.Struct, frozen=True, kw_only=True):
    """A write beside the sessions (side.py's `put_indexed`: a conversation record) that rides
    in a turn's commit: no round trip of its own, and never lost between the commit and a write."""

    key: str  # without the store's prefix; `{<session id>}:...` shares the session's hash tag
    fields: dict[str, bytes]
    ttl_seconds: int  # of the hash and of each index
    drop: list[str] = []  # fields deleted after `fields` are set (one in both ends deleted)
    indexes: list[str] = []  # sorted sets (without the prefix) that get `member` at `score`
    member: str = ""
    score: float = 0.0


class Commit(msgspec.Struct, kw_only=True):
    session: bytes
    version: int  # the new version written (expect_version + 1)
    expect_version: int  # the version loaded by `begin`; another value stored -> StaleWrite
    ttl_seconds: int
    dedupe_id: str | None = None
    reply: bytes | None = None  # kept under dedupe_id for dedupe_ttl_seconds (Redis: with the turn's transcript)
    dedupe_ttl_seconds: int = 172_800
    transcript: list[bytes] = []
    retention_seconds: int = 30 * 86400
    outbox: list[OutboxPut] = []
    outbox_due: float = 0.0  # when the sender may pick the new outbox items
    timer: TimerSet | None = None  # arm this timer; None clears the session's timer
    contact: str = ""  # indexes the conversation for export / erasure
    updated_at: float = 0.0
    side: list[SidePut] = []  # written with the turn, as `store.side.put_indexed` would
    # more timers armed with the turn (appointment reminders): the turn never clears them, and
    # they fire even when the session has moved on (see `reminder_member`)
    reminders: list[TimerSet] = []


class OutboxClaim(msgspec.Struct, frozen=True):
    id: str
    payload: bytes
    # whether the payload's `contact` had opted out when the item was claimed; None when the
    # store could not tell (a payload that is not a msgpack map with a string "contact")
    opted_out: bool | None = None
    # an earlier claim of this item ended with neither finish_outbox nor retry_outbox (its sender
    # died, or outlived the lease): that send's outcome is unknown
    reclaimed: bool = False


class SessionInfo(msgspec.Struct, frozen=True):
    session_id: str
    updated_at: float


class ContactExport(msgspec.Struct, kw_only=True):
    contact: str
    opted_out: bool
    sessions: dict[str, bytes]  # session id -> stored session
    transcripts: dict[str, list[bytes]]


@runtime_checkable
class SideStore(Protocol):
    """Storage beside the sessions for what is written rarely (side.py): hashes, sorted sets, leases.
    Keys are given without the store's prefix; every key gets a TTL."""

    async def hset(
        self, key: str, fields: Mapping[str, bytes], *, ttl_seconds: int, drop: Sequence[str] = ()
    ) -> None: ...
    async def hgetall(self, key: str) -> dict[str, bytes]: ...
    async def hincrby(self, key: str, field: str, amount: int, *, ttl_seconds: int) -> int: ...
    async def hgetall_many(self, keys: list[str]) -> list[dict[str, bytes]]: ...
    async def zadd(self, key: str, member: str, score: float, *, ttl_seconds: int) -> None: ...
    async def put_indexed(
        self, key: str, fields: Mapping[str, bytes], indexes: list[str], member: str, score: float, *,
        ttl_seconds: int, drop: Sequence[str] = (),
    ) -> None: ...
    async def zrange(
        self, key: str, *, low: float = float("-inf"), high: float = float("inf"), desc: bool = False,
        offset: int = 0, limit: int = 1000,
    ) -> list[tuple[str, float]]: ...
    async def zrem(self, key: str, members: list[str]) -> int: ...
    async def zremrangebyscore(self, key: str, high: float) -> int: ...
    async def zcard(self, key: str) -> int: ...
    async def delete(self, keys: list[str]) -> int: ...
    async def acquire(self, name: str, ttl_seconds: float) -> str | None: ...
    async def release(self, name: str, token: str) -> None: ...
    def keys_for_test(self) -> list[str]: ...


@runtime_checkable
class TurnStore(Protocol):
    """A turn's storage: `begin` (dedupe + lock + load), `commit` (everything the turn wrote, fenced) or
    `release`; `load` outside a turn."""

    async def begin(
        self, session_id: str, dedupe_id: str | None, *, lock_ttl_seconds: float, wait_seconds: float,
        contact: str | None = None,
    ) -> Begin:
        """Dedupe check, then lock and load. Waits up to `wait_seconds` for the lock, then LockTimeout."""
        ...

    async def commit(self, session_id: str, token: str, commit: Commit) -> None:
        """Atomically save everything a turn produced and unlock. StaleWrite when fenced off."""
        ...

    async def release(self, session_id: str, token: str) -> None:
        """Unlock without saving (the turn failed); a no-op if the lock is no longer ours."""
        ...

    async def load(self, session_id: str) -> bytes | None: ...

    async def load_many(self, session_ids: list[str]) -> list[bytes | None]:
        """`load` of each id, in order, in one round trip (the admin list of running conversations)."""
        ...


@runtime_checkable
class TimerStore(Protocol):
    """The no-reply timers a commit arms (`Commit.timer`), each handed to one poller."""

    async def claim_due_timers(self, now: float, limit: int = 100) -> list[str]:
        """Remove and return due timer members; each is returned to exactly one caller."""
        ...

    async def put_timer(self, member: str, due: float) -> None:
        """Arm a timer member again (a claimed timer this process leaves to another)."""
        ...

    async def drop_timer(self, member: str) -> None:
        """Disarm a timer member (a reminder re-armed as a lease while it fires, then done with)."""
        ...


@runtime_checkable
class OutboxStore(Protocol):
    """The messages a commit queued (`Commit.outbox`), leased to one sender at a time."""

    async def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxClaim]:
        """Lease ready outbox items; an item not acked before its lease ends is claimed again.
        Each claim says whether its payload's contact has opted out (Redis: in the same script call)."""
        ...

    async def ack_outbox(self, item_id: str) -> None: ...

    async def finish_outbox(
        self, item_id: str, status: str, error_code: str | None = None, message_ids: Sequence[str] = (),
        failure: bytes = b"",
    ) -> None:
        """Done with an item, in one step: record `status` for it (and "sent" for each provider
        message id), never backwards, and remove it from the outbox (Redis: one script call).
        A non-empty `failure` (the runtime's FailedSend) is kept for `failed_outbox`, if the item
        was still there (a second finish of one item lists it once)."""
        ...

    async def retry_outbox(self, item_id: str, payload: bytes, due: float) -> None:
        """The item's new payload and next ready-at (only while it is there); its claim ended."""
        ...

    async def failed_outbox(self, limit: int = 100) -> list[bytes]:
        """The `failure` entries of given-up items, newest first (the last FAILED_OUTBOX_KEPT, 30 days)."""
        ...


@runtime_checkable
class StatusStore(Protocol):
    """Delivery statuses by provider message id (or send key), never moving backwards."""

    async def record_status(self, message_id: str, status: str, error_code: str | None = None) -> str:
        """Store a delivery status unless it would move backwards; returns the status kept."""
        ...

    async def get_status(self, message_id: str) -> tuple[str, str | None] | None: ...


@runtime_checkable
class ContactStore(Protocol):
    """What is kept per contact: the opt-out, and the export / erasure of the rest."""

    async def set_opt_out(self, contact: str, opted_out: bool) -> None: ...

    async def is_opted_out(self, contact: str) -> bool: ...

    async def export_contact(self, contact: str) -> ContactExport: ...

    async def erase_contact(self, contact: str) -> int:
        """Delete everything about a contact but its opt-out record; returns keys removed."""
        ...


@runtime_checkable
class RecordStore(Protocol):
    """Transcripts and the index of conversations (admin API, retention)."""

    async def get_transcript(self, session_id: str) -> list[bytes]: ...

    async def trim_transcript(self, session_id: str, older_than: float) -> int:
        """Drop the leading turns whose entries are all older than `older_than`; returns the entries dropped."""
        ...

    async def list_sessions(self, limit: int = 100, offset: int = 0) -> list[SessionInfo]: ...


@runtime_checkable
class RevisionStore(Protocol):
    """Flow revisions (their YAML source), so a conversation finishes on the revision it started on."""

    async def put_revision(self, flow_id: str, revision: str, source: str) -> None: ...

    async def get_revision(self, revision: str) -> str | None: ...

    async def latest_revision(self, flow_id: str) -> str | None: ...

    async def list_revisions(self, flow_id: str) -> list[str]: ...


@runtime_checkable
class HealthStore(Protocol):
    """The backend itself: reachability, whether it takes writes, shutdown."""

    async def ping(self) -> None: ...

    async def check_writes(self) -> None:
        """StoreUnavailable (StoreWriteRefused) when the store is up but takes no writes (/health)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class SessionStore(TurnStore, TimerStore, OutboxStore, StatusStore, ContactStore, RecordStore, RevisionStore,
                   HealthStore, Protocol):
    """A backend: every small store above over one storage, plus its side store (`side`), so a
    commit's writes to all of them are one atomic step. A caller asks for the small store it needs
    (`TurnStore`, `OutboxStore`, ...); tests/stores/test_store_contract.py runs over every backend."""

    @property
    def side(self) -> SideStore: ...


def entry_time(raw: bytes) -> float:
    """The `at` of an encoded TranscriptEntry (array_like: element 0); undecodable counts as 0."""
    try:
        value = msgspec.msgpack.decode(raw)
        return float(value[0]) if isinstance(value, list) and value else 0.0
    except (msgspec.DecodeError, TypeError, ValueError):
        return 0.0


def payload_contact(payload: bytes) -> str | None:
    """The `contact` of an outbox payload that is a msgpack map (the runtime's OutboxItem), else
    None. The Redis store's claim script reads it the same way (cmsgpack) to check the opt-out."""
    try:
        value = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        return None
    contact = value.get("contact") if isinstance(value, dict) else None
    return contact if isinstance(contact, str) else None


def timer_member(session_id: str, turns: int) -> str:
    return f"{session_id}|{turns}"


REMINDER_MARK = "R"  # a timer member "<sid>|R<payload>" is an appointment reminder, not a no-reply timer


def reminder_member(session_id: str, payload: bytes) -> str:
    """A reminder's timer member: the session id, then its payload (msgpack, base64url: no '|')."""
    return f"{session_id}|{REMINDER_MARK}{base64.urlsafe_b64encode(payload).decode()}"


def parse_reminder_member(member: str) -> tuple[str, bytes] | None:
    """(session id, payload) of a reminder's member; None for a no-reply timer's."""
    session_id, _, tail = member.rpartition("|")
    if not tail.startswith(REMINDER_MARK):
        return None
    return session_id, base64.urlsafe_b64decode(tail[len(REMINDER_MARK):])


def parse_timer_member(member: str) -> tuple[str, int]:
    session_id, _, turns = member.rpartition("|")
    return session_id, int(turns)


def outbox_session(item_id: str) -> str:
    """Outbox ids are `<session id>|<unique>`: the session part keys the item's storage."""
    return item_id.rpartition("|")[0]
