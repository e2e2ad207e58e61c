"""Conversation records and per-flow analytics.

A compact record is written when a conversation starts and when it ends (never on the
turns in between), in the turn's commit script, so every turn keeps its two round trips:

    recorder = Recorder(store, retention_seconds)
    put = recorder.record_put(channel, result)                     # runtime, before each commit
    await store.commit(sid, token, Commit(..., side=[put] if put else []))
    await recorder.after_commit(channel, result, recorded=True)    # metrics (writes when not recorded)
    rows = await recorder.list_records(flow="dental_booking", outcome="booked")
    report = await recorder.analytics(compiled)                   # funnel, outcomes, channels

Storage (beside the session store, TTL = retention): the hash `{<sid>}:r:<started ms>` with
fields `start` and `end` (so a start and an end written by two processes never overwrite
each other; `seen`: the sweep's snapshot of a running one), indexed in the sorted sets
`records` and `records:<flow>` by start time. A conversation's id is `<session id>~<started ms>`;
it shares the session's hash tag, so the store's contact erasure removes the record hash too.

Staff's no-show marks (`mark_no_show`, from `POST /api/bookings/{id}/no-show`) are one more
field per booking, `ns:<booking id>`, on the record of each conversation about the booking:
the one that booked it (`summary.booking`) and a reminder conversation started with it (a
collected field holding it). They share the record's key, so its slot, retention and erasure.

A value is a msgpack array (`_Compact`: without what the id and the field restore) cut into
pieces of at most 64 bytes (`start`, `start1`, ...): Redis keeps a hash whose values are all
that short as a listpack (hash-max-listpack-value), ~180 B for a running conversation instead
of ~420 B as a hashtable. Values written before (one msgpack map) still read.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from orchestrator import metrics
from orchestrator.logs import redact_phone
from orchestrator.model import Session, TranscriptEntry, TurnResult
from orchestrator.stores.base import SessionStore, SidePut

if TYPE_CHECKING:
    from orchestrator.engine.compiler import CompiledFlow

log = logging.getLogger("orchestrator.records.analytics")
INDEX = "records"
BOOKED_OUTCOMES = frozenset({"booked"})
MAX_SCAN = 20_000  # records read for one analytics report or filtered list
NO_SHOW_FIELD = "ns:"  # a record's field per booking of the conversation staff marked a no-show
_session_decoder = msgspec.msgpack.Decoder(Session)
_entry_decoder = msgspec.msgpack.Decoder(TranscriptEntry)
_ID = re.compile(r"^(?P<sid>[^~]{1,200})~(?P<ms>\d{1,16})$")


class ConversationRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    session_id: str
    flow: str
    revision: str
    business: str = ""
    contact: str = ""
    channels: list[str] = []
    status: str = "active"  # active | ended | abandoned (listed: the session expired or moved on before an end)
    started_at: float = 0.0
    ended_at: float | None = None
    last_activity_at: float | None = None  # listed: the last turn (the live session's), or the end
    outcome: str | None = None
    turns: int = 0
    duration_seconds: float | None = None
    last_state: str = ""
    path: list[str] = []
    summary: dict[str, Any] | None = None
    no_shows: list[str] = []  # the conversation's bookings staff marked no-shows (their ids)


class FunnelStep(msgspec.Struct, kw_only=True):
    state: str
    reached: int  # conversations that entered the state
    dropped: int  # abandoned there (the session expired with this as its last state)
    waiting: int  # still running, waiting there now


class FlowAnalytics(msgspec.Struct, kw_only=True):
    """GET /api/flows/{id}/analytics: conversations started in the window, by how they stand."""

    flow: str
    revision: str
    started: int
    ended: int
    active: int
    abandoned: int
    outcomes: dict[str, int]  # ended conversations by outcome
    funnel: list[FunnelStep]  # the flow's states in file order, those reached at least once
    drop_off: dict[str, int]  # abandoned conversations by last state
    average_turns: float | None
    average_duration_seconds: float | None
    booked: int
    booking_conversion: float | None  # booked / started
    channels: dict[str, dict[str, int]]  # first channel -> started, active, abandoned, <outcome>: counts
    # bookings of these conversations staff marked no-shows, and by the outcome of the conversation
    # holding the mark: a reminder flow's `confirmed` here beside outcomes.confirmed says how many
    # who confirmed did not come
    no_shows: int = 0
    no_shows_by_outcome: dict[str, int] = {}


class _Compact(msgspec.Struct, array_like=True):
    """A record as stored: its id (the hash's key), status and duration (from ended_at) and the
    last state (when it ends the path) are left out, and trailing defaults too (`_stored`)."""

    flow: str
    revision: str
    started_at: float
    channels: list[str] = []
    turns: int = 0
    path: list[str] = []
    last_state: str | None = None  # None: the path's last state
    ended_at: float | None = None  # set: the conversation ended
    outcome: str | None = None
    summary: dict[str, Any] | None = None
    who: list[str] | None = None  # [session id, business, contact] when the id does not restore them


_COMPACT_DEFAULTS: tuple[Any, ...] = ([], 0, [], None, None, None, None, None)  # the fields after started_at
_record_decoder = msgspec.msgpack.Decoder(ConversationRecord)
_compact_decoder = msgspec.msgpack.Decoder(_Compact)
_encoder = msgspec.msgpack.Encoder()
PIECE_BYTES = 64  # Redis' default hash-max-listpack-value


def conversation_id(session_id: str, started_at: float) -> str:
    return f"{session_id}~{round(started_at * 1000)}"


def parse_conversation_id(conv_id: str) -> tuple[str, int] | None:
    m = _ID.match(conv_id)
    return (m["sid"], int(m["ms"])) if m else None


def _key(conv_id: str) -> str:
    sid, _, ms = conv_id.rpartition("~")
    return f"{{{sid}}}:r:{ms}"


def _stored(record: ConversationRecord) -> bytes:
    """A record as stored (`_Compact`), without what its id restores (session id "<business>:<contact>").
    One whose status or duration does not follow from ended_at keeps the full map."""
    sid = record.id.rpartition("~")[0]
    derived = (record.status == ("ended" if record.ended_at is not None else "active")
               and record.duration_seconds == _duration(record.started_at, record.ended_at)
               and parse_conversation_id(record.id) is not None)
    plain = record.session_id == sid and ":" not in record.business and sid == f"{record.business}:{record.contact}"
    if not derived:
        if plain:
            record = msgspec.structs.replace(record, session_id="", business="", contact="")
        return _encoder.encode(record)
    last = None if record.path and record.last_state == record.path[-1] else record.last_state
    rest = [record.channels, record.turns, record.path, last, record.ended_at, record.outcome, record.summary,
            None if plain else [record.session_id, record.business, record.contact]]
    while rest and rest[-1] == _COMPACT_DEFAULTS[len(rest) - 1]:
        rest.pop()
    return _encoder.encode([record.flow, record.revision, record.started_at, *rest])


def _duration(started_at: float, ended_at: float | None) -> float | None:
    return round(ended_at - started_at, 3) if ended_at is not None else None


def _restore(record: ConversationRecord) -> ConversationRecord:
    if not record.session_id:
        record.session_id = record.id.rpartition("~")[0]
        record.business, _, record.contact = record.session_id.partition(":")
    return record


def _decode(raw: bytes, conv_id: str) -> ConversationRecord:
    if not (0x90 <= raw[0] <= 0x9F or raw[0] in (0xDC, 0xDD)):  # a map: written by older code
        return _restore(_record_decoder.decode(raw))
    c = _compact_decoder.decode(raw)
    session_id, business, contact = c.who or ("", "", "")
    return _restore(ConversationRecord(
        id=conv_id, session_id=session_id, flow=c.flow, revision=c.revision, business=business, contact=contact,
        channels=c.channels, status="ended" if c.ended_at is not None else "active", started_at=c.started_at,
        ended_at=c.ended_at, outcome=c.outcome, turns=c.turns, duration_seconds=_duration(c.started_at, c.ended_at),
        last_state=c.last_state if c.last_state is not None else (c.path[-1] if c.path else ""), path=c.path,
        summary=c.summary,
    ))


def _pieces(field: str, value: bytes) -> tuple[dict[str, bytes], str]:
    """`value` as hash fields of at most PIECE_BYTES (`field`, `field1`, ...), and the field after
    the last piece: the writer deletes it, so pieces of an older, longer value are never joined."""
    parts = [value[i : i + PIECE_BYTES] for i in range(0, len(value), PIECE_BYTES)] or [b""]
    return {field if i == 0 else f"{field}{i}": part for i, part in enumerate(parts)}, f"{field}{len(parts)}"


def _joined(fields: dict[str, bytes], field: str) -> bytes | None:
    first = fields.get(field)
    if first is None:
        return None
    parts, i = [first], 1
    while (part := fields.get(f"{field}{i}")) is not None:
        parts.append(part)
        i += 1
    return b"".join(parts)


def _merge(fields: dict[str, bytes], conv_id: str) -> ConversationRecord | None:
    start = _joined(fields, "start")
    raw = _joined(fields, "end") or _joined(fields, "seen") or start
    if raw is None:
        return None
    record = _decode(raw, conv_id)
    if start is not None and raw is not start:  # keep the first channel first
        first = _decode(start, conv_id)
        record.channels = list(dict.fromkeys([*first.channels, *record.channels]))
    record.no_shows = sorted(f[len(NO_SHOW_FIELD):] for f in fields if f.startswith(NO_SHOW_FIELD))
    return record


def names_booking(record: ConversationRecord, booking_id: str) -> bool:
    """Whether the conversation's summary holds booking `booking_id`: the booking it made, or a
    collected value that is the booking (a reminder flow's `booking`, which it was started with)."""
    summary = record.summary or {}
    values = [summary.get("booking"), *(f.get("value") for f in summary.get("fields") or [] if isinstance(f, Mapping))]
    return any(isinstance(v, Mapping) and str(v.get("id") or "") == booking_id for v in values)


def record_of(session: Session, result: TurnResult | None, channel: str) -> ConversationRecord:
    ended = session.status == "ended"
    summary = result.summary if result is not None else None
    return ConversationRecord(
        id=conversation_id(session.id, session.started_at), session_id=session.id, flow=session.flow,
        revision=session.revision, business=session.business, contact=session.contact,
        channels=list(dict.fromkeys([channel, session.channel])), status="ended" if ended else "active",
        started_at=session.started_at, ended_at=session.updated_at if ended else None,
        outcome=session.outcome if ended else None, turns=session.turns,
        duration_seconds=round(session.updated_at - session.started_at, 3) if ended else None,
        last_state=session.state, path=list(session.path), summary=summary,
    )


class Recorder:
    def __init__(self, store: SessionStore, retention_seconds: int) -> None:
        self.store = store
        self.retention_seconds = max(1, int(retention_seconds))
        self.side = store.side

    # writing (the runtime asks for the record before each commit and calls after_commit after it;
    # a record exists only at a conversation's start and end)
    def record_put(self, channel: str, result: TurnResult) -> SidePut | None:
        """The record write of this turn (its first or last, else None), for the turn's commit to
        carry (`Commit.side`): written atomically with the turn, at no round trip of its own."""
        session = result.session
        if session.turns != 1 and not result.ended:
            return None
        record = record_of(session, result, channel)
        fields, after = _pieces("end" if result.ended else "start", _stored(record))
        return SidePut(key=_key(record.id), fields=fields, ttl_seconds=self.retention_seconds, drop=[after],
                       indexes=[INDEX, f"{INDEX}:{record.flow}"], member=record.id, score=record.started_at)

    async def after_commit(self, channel: str, result: TurnResult, *, recorded: bool = False) -> None:
        """Count the turn; write its record (`record_put`) unless the commit carried it (`recorded`)."""
        session = result.session
        for entry in result.transcript:
            if entry.dir == "call":
                outcome = entry.data.get("outcome", "?") if isinstance(entry.data, dict) else "?"
                metrics.labelled(metrics.CONNECTOR_CALLS, entry.text, outcome).inc()
        if session.turns == 1:
            metrics.ACTIVE.inc()
        if result.ended:
            metrics.ACTIVE.dec()
        put = None if recorded else self.record_put(channel, result)
        if put is None:
            return
        try:
            await self.side.put_indexed(put.key, put.fields, put.indexes, put.member, put.score,
                                        ttl_seconds=put.ttl_seconds, drop=put.drop)
        except Exception as exc:  # the turn is saved already; a lost record is logged, not fatal
            log.warning("conversation record %s not written: %s", redact_phone(put.member), exc)

    # reading
    async def get(self, conv_id: str) -> ConversationRecord | None:
        if parse_conversation_id(conv_id) is None:
            return None
        return _merge(await self.side.hgetall(_key(conv_id)), conv_id)

    async def scan(
        self, *, flow: str | None = None, since: float | None = None, until: float | None = None,
        limit: int = MAX_SCAN, offset: int = 0,
    ) -> list[ConversationRecord]:
        """Records newest first (by start time) within [since, until]."""
        index = f"{INDEX}:{flow}" if flow else INDEX
        ids = await self.side.zrange(
            index, low=since if since is not None else float("-inf"),
            high=until if until is not None else float("inf"), desc=True, offset=offset, limit=limit,
        )
        out: list[ConversationRecord] = []
        batch = 500
        for i in range(0, len(ids), batch):
            chunk = [m for m, _ in ids[i : i + batch]]
            for conv_id, fields in zip(chunk, await self.side.hgetall_many([_key(m) for m in chunk]), strict=True):
                record = _merge(fields, conv_id)
                if record is not None:
                    out.append(record)
        return out

    async def list_records(
        self, *, flow: str | None = None, channel: str | None = None, outcome: str | None = None,
        contact: str | None = None, since: float | None = None, until: float | None = None,
        limit: int = 100, offset: int = 0,
    ) -> list[ConversationRecord]:
        """Records as they stand now (`current`), newest first; the filters apply to current data."""
        filtered = not (channel or outcome or contact)
        rows = await self.scan(flow=flow, since=since, until=until,
                               limit=limit if filtered else MAX_SCAN, offset=offset if filtered else 0)
        if contact:  # the contact is in the id: narrow before reading live sessions
            rows = [r for r in rows if r.contact == contact]
        rows = await self.current(rows)
        if filtered:
            return rows
        keep = [
            r for r in rows
            if (not channel or channel in r.channels)
            and (not outcome or r.outcome == outcome)
            and (not contact or r.contact == contact)
        ]
        return keep[offset : offset + limit]

    async def transcript(self, record: ConversationRecord) -> list[TranscriptEntry]:
        """The transcript entries of this conversation (the session's list holds every
        conversation of the contact with the business, in order)."""
        entries = [_entry_decoder.decode(raw) for raw in await self.store.get_transcript(record.session_id)]
        end = record.ended_at if record.ended_at is not None else float("inf")
        return [e for e in entries if record.started_at <= e.at <= end]

    async def current(self, records: list[ConversationRecord]) -> list[ConversationRecord]:
        """`records` brought up to date: a record is written only at a conversation's first and last
        turns, so a running one is read from its live session (state, turns, path, channels, last
        activity), in one pipelined read per batch of the rows not ended. Nothing is written and the
        turn path is untouched: the cost is paid by the reader."""
        for r in records:
            if r.status == "ended":
                r.last_activity_at = r.ended_at
        running = [r for r in records if r.status != "ended"]
        batch = 500
        for i in range(0, len(running), batch):
            chunk = running[i : i + batch]
            for r, raw in zip(chunk, await self.store.load_many([r.session_id for r in chunk]), strict=True):
                live = _session_decoder.decode(raw) if raw is not None else None
                if live is None or round(live.started_at * 1000) != round(r.started_at * 1000):
                    r.status = "abandoned"  # expired, or the contact's session moved on to a newer one
                    continue
                ended = live.status == "ended"  # its end record was lost: the session is the truth
                r.status = "ended" if ended else "active"
                r.last_state, r.path, r.turns = live.state, list(live.path), live.turns
                r.channels = list(dict.fromkeys([*r.channels, live.channel]))
                r.last_activity_at = live.updated_at or None
                if ended:
                    r.outcome, r.ended_at = live.outcome, live.updated_at
                    r.duration_seconds = _duration(live.started_at, live.updated_at)
        return records

    async def live_session(self, record: ConversationRecord) -> Session | None:
        raw = await self.store.load(record.session_id)
        if raw is None:
            return None
        session = _session_decoder.decode(raw)
        if round(session.started_at * 1000) != round(record.started_at * 1000):
            return None  # the contact's session has moved on to a newer conversation
        return session

    async def _seen(self, record: ConversationRecord, live: Session) -> None:
        """Remember where a running conversation is, so that once its session expires the
        drop-off is counted at its last state (analytics reads and the retention sweep call this)."""
        if live.path == record.path:
            return
        seen = record_of(live, None, record.channels[0] if record.channels else live.channel)
        fields, after = _pieces("seen", _stored(seen))
        await self.side.hset(_key(record.id), fields, ttl_seconds=self.retention_seconds, drop=[after])

    async def sweep_active(self) -> int:
        """Snapshot the live state of every running conversation; returns how many were seen."""
        seen = 0
        for record in await self.scan(limit=MAX_SCAN):
            if record.status == "ended":
                continue
            live = await self.live_session(record)
            if live is not None and live.status == "active":
                await self._seen(record, live)
                seen += 1
        return seen

    # staff's marks
    async def mark_no_show(self, session_id: str, booking_id: str, before: float) -> list[str]:
        """Record that booking `booking_id` (made in session `session_id`, starting at `before`) was
        a no-show, on every conversation of the session started by then whose summary holds it
        (`names_booking`); their ids. Marking again writes the same field: nothing changes."""
        members = await self.side.zrange(INDEX, high=before, desc=True, limit=MAX_SCAN * 5)
        mine = [m for m, _ in members if (p := parse_conversation_id(m)) and p[0] == session_id]
        marked = []
        for conv_id, fields in zip(mine, await self.side.hgetall_many([_key(m) for m in mine]), strict=True):
            record = _merge(fields, conv_id)
            if record is not None and names_booking(record, booking_id):
                await self.side.hset(_key(conv_id), {NO_SHOW_FIELD + booking_id: b"1"},
                                     ttl_seconds=self.retention_seconds)
                marked.append(conv_id)
        return sorted(marked)

    # erasure
    async def erase_contact(self, contact: str) -> int:
        """Remove every record of `contact` (hashes and index entries)."""
        removed = 0
        for index_name in await self._indexes():
            members = await self.side.zrange(index_name, limit=MAX_SCAN * 5)
            mine = [m for m, _ in members if (p := parse_conversation_id(m)) and p[0].endswith(":" + contact)]
            if mine:
                removed += await self.side.zrem(index_name, mine)
                removed += await self.side.delete([_key(m) for m in mine])
        return removed

    async def _indexes(self) -> list[str]:
        flows = {r.flow for r in await self.scan(limit=MAX_SCAN)}
        return [INDEX, *(f"{INDEX}:{f}" for f in sorted(flows))]

    async def purge_before(self, cutoff: float) -> int:
        """Drop index entries (and their hashes) of conversations started before `cutoff`."""
        removed = 0
        for index_name in await self._indexes():
            old = await self.side.zrange(index_name, high=cutoff, limit=MAX_SCAN * 5)
            if old:
                removed += await self.side.zrem(index_name, [m for m, _ in old])
                await self.side.delete([_key(m) for m, _ in old])
        return removed

    # analytics
    async def analytics(
        self, compiled: CompiledFlow, *, since: float | None = None, until: float | None = None,
    ) -> FlowAnalytics:
        records = await self.scan(flow=compiled.id, since=since, until=until)
        outcomes: Counter[str] = Counter()
        reached: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        waiting: Counter[str] = Counter()
        channels: dict[str, Counter[str]] = {}
        no_shows: Counter[str] = Counter()
        turns: list[int] = []
        durations: list[float] = []
        booked = active = abandoned = 0
        for r in records:
            status, path, last = r.status, r.path, r.last_state
            if status != "ended":
                live = await self.live_session(r)
                if live is not None and live.status == "active":
                    status, path, last = "active", live.path, live.state
                    await self._seen(r, live)
                elif live is not None:  # ended but the end record was lost: trust the session
                    status, path, last = "ended", live.path, live.state
                    r.outcome, r.turns = live.outcome, live.turns
                    r.duration_seconds = round(live.updated_at - live.started_at, 3)
                else:
                    status = "abandoned"
            for state in dict.fromkeys(path):
                reached[state] += 1
            if r.no_shows:
                no_shows[(r.outcome or "ended") if status == "ended" else status] += len(r.no_shows)
            per_channel = channels.setdefault(r.channels[0] if r.channels else "?", Counter())
            per_channel["started"] += 1
            if status == "ended":
                outcome = r.outcome or "ended"
                outcomes[outcome] += 1
                per_channel[outcome] += 1
                turns.append(r.turns)
                if r.duration_seconds is not None:
                    durations.append(r.duration_seconds)
                if outcome in BOOKED_OUTCOMES or (r.summary or {}).get("booking"):
                    booked += 1
            elif status == "active":
                active += 1
                waiting[last] += 1
                per_channel["active"] += 1
            else:
                abandoned += 1
                dropped[last] += 1
                per_channel["abandoned"] += 1
        started = len(records)
        order = list(compiled.flow.states)
        funnel = [
            FunnelStep(state=s, reached=reached[s], dropped=dropped[s], waiting=waiting[s])
            for s in order if reached[s] or dropped[s] or waiting[s]
        ]
        return FlowAnalytics(
            flow=compiled.id, revision=compiled.revision, started=started,
            ended=sum(outcomes.values()), active=active, abandoned=abandoned,
            outcomes=dict(sorted(outcomes.items())), funnel=funnel,
            drop_off=dict(sorted(dropped.items())),
            average_turns=round(sum(turns) / len(turns), 2) if turns else None,
            average_duration_seconds=round(sum(durations) / len(durations), 2) if durations else None,
            booked=booked, booking_conversion=round(booked / started, 4) if started else None,
            channels={c: dict(v) for c, v in sorted(channels.items())},
            no_shows=sum(no_shows.values()), no_shows_by_outcome=dict(sorted(no_shows.items())),
        )
