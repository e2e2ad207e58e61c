"""Retention: a periodic job deleting what is older than ORCHESTRATOR_RETENTION_DAYS.

    job = RetentionJob(runtime.store, retention_seconds=settings.retention_seconds)
    report = await job.run_once(now)     # None when another process holds this run's lease
    await job.run_forever(interval)      # the server lifespan runs this

Every key already carries a TTL; this job handles what a TTL cannot: transcript entries
older than the cutoff inside a conversation list that is still being appended to (which
also drops recording URLs and transcriptions saved in those entries), index entries of
expired conversation records, and old audit entries. With several processes a lease
(`SET NX PX` on Redis) lets one of them run each pass.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from orchestrator.logs import redact_phone
from orchestrator.records.analytics import Recorder
from orchestrator.records.audit import AuditLog
from orchestrator.runtime.periodic import every
from orchestrator.stores.base import RecordStore, SessionStore

log = logging.getLogger("orchestrator.records.retention")
LEASE = "retention"
PAGE = 500
_RECORDING_SID = re.compile(r"/Recordings/(RE[0-9a-fA-F]{32})")
DeleteRecordings = Callable[[list[str]], Awaitable[int]]


class RetentionReport(msgspec.Struct, kw_only=True):
    cutoff: float
    transcript_entries: int = 0
    records: int = 0
    audit_entries: int = 0
    sessions_checked: int = 0
    active_seen: int = 0
    recordings: int = 0  # provider recordings (Twilio) of the purged conversations deleted


async def trim_transcript(store: RecordStore, session_id: str, cutoff: float) -> int:
    """Drop a session's transcript entries older than `cutoff`; returns how many (commits only
    append at the tail, so trimming the head never drops a new one)."""
    return await store.trim_transcript(session_id, cutoff)


class RetentionJob:
    def __init__(self, store: SessionStore, *, retention_seconds: int, lease_seconds: float = 300.0,
                 clock: Any = time.time, delete_recordings: DeleteRecordings | None = None) -> None:
        self.store = store
        self.delete_recordings = delete_recordings  # the voice channel's: recordings go with their conversations
        self.retention_seconds = max(1, int(retention_seconds))
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.side = store.side

    async def run_once(self, now: float | None = None) -> RetentionReport | None:
        token = await self.side.acquire(LEASE, self.lease_seconds)
        if token is None:
            log.info("retention: another process holds this run's lease; skipped")
            return None
        try:
            return await self._run(self.clock() if now is None else now)
        finally:
            await self.side.release(LEASE, token)

    async def _run(self, now: float) -> RetentionReport:
        cutoff = now - self.retention_seconds
        report = RetentionReport(cutoff=cutoff)
        # a bucketed store (a Redis Cluster) is paged bucket by bucket, each page a range of one key
        buckets: list[int | None] = list(range(getattr(self.store, "bucket_count", 0))) or [None]
        for bucket in buckets:
            offset = 0
            while True:
                page = await self._page(offset, bucket)
                for info in page:
                    report.sessions_checked += 1
                    try:
                        report.transcript_entries += await trim_transcript(self.store, info.session_id, cutoff)
                    except Exception as exc:
                        log.warning("retention: transcript of %s not trimmed: %s",
                                    redact_phone(info.session_id), exc)
                if len(page) < PAGE:
                    break
                offset += PAGE
        recorder = Recorder(self.store, self.retention_seconds)
        if self.delete_recordings is not None:
            try:
                report.recordings = await self._purge_recordings(recorder, cutoff)
            except Exception as exc:  # the records stay, so the next pass deletes them
                log.warning("retention: recordings of expired conversations not deleted yet: %s", exc)
                log.info("retention pass done", extra=msgspec.to_builtins(report))
                return report
        report.records = await recorder.purge_before(cutoff)
        report.active_seen = await recorder.sweep_active()  # drop-off analytics after sessions expire
        report.audit_entries = await AuditLog(self.store, self.retention_seconds).purge_before(cutoff)
        log.info("retention pass done", extra=msgspec.to_builtins(report))
        return report

    async def _page(self, offset: int, bucket: int | None) -> list[Any]:
        if bucket is None:
            return await self.store.list_sessions(limit=PAGE, offset=offset)
        lister: Any = self.store
        return list(await lister.list_sessions(limit=PAGE, offset=offset, bucket=bucket))

    async def _purge_recordings(self, recorder: Recorder, cutoff: float) -> int:
        """The provider's recordings named by the conversations about to be purged."""
        assert self.delete_recordings is not None
        sids: set[str] = set()
        offset = 0
        while True:
            page = await recorder.list_records(until=cutoff, limit=PAGE, offset=offset)
            sids.update(sid for r in page if r.summary for sid in _RECORDING_SID.findall(repr(r.summary)))
            if len(page) < PAGE:
                break
            offset += PAGE
        return await self.delete_recordings(sorted(sids)) if sids else 0

    async def run_forever(self, interval_seconds: float = 3600.0) -> None:
        await every(interval_seconds, self.run_once, what="retention pass")
