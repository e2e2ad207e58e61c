"""Flows directory reload: an edited flow file becomes a new revision without a restart.

    watcher = FlowWatcher(runtime.catalog, interval_seconds=2.0)
    await watcher.check()          # one poll: reload when any *.yaml / *.yml changed
    await watcher.run()            # poll until cancelled (the server lifespan runs this)

Polling file mtimes and sizes costs a `stat` per file per interval and works on every file
system (network mounts, containers) where inotify does not. An invalid edit is logged with
its `file:line:col` diagnostics and skipped by the catalog: the previous revision keeps
serving new and running conversations. Running conversations always keep their revision.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from orchestrator.runtime.periodic import every

log = logging.getLogger("orchestrator.runtime.reloader")
Snapshot = dict[str, tuple[float, int]]


def snapshot(directory: Path | None) -> Snapshot:
    """path -> (mtime, size) of the flow files in `directory`."""
    if directory is None or not directory.is_dir():
        return {}
    out: Snapshot = {}
    for path in sorted(directory.glob("*.y*ml")):
        try:
            st = path.stat()
        except OSError:  # removed between glob and stat
            continue
        out[str(path)] = (st.st_mtime, st.st_size)
    return out


class FlowWatcher:
    def __init__(self, catalog: Any, *, interval_seconds: float = 2.0) -> None:
        self.catalog = catalog
        self.interval_seconds = interval_seconds
        self._seen = snapshot(catalog.flows_dir)
        self.reloads = 0

    async def check(self) -> dict[str, Any] | None:
        """Reload when the directory changed; returns the problems found (None: unchanged)."""
        now = snapshot(self.catalog.flows_dir)
        if now == self._seen:
            return None
        changed = sorted(p for p in set(now) | set(self._seen) if now.get(p) != self._seen.get(p))
        self._seen = now
        before = {fid: (await self.catalog.latest(fid)).revision for fid in self.catalog.flow_ids()}
        problems: dict[str, Any] = await self.catalog.reload()
        self.reloads += 1
        for fid in self.catalog.flow_ids():
            revision = (await self.catalog.latest(fid)).revision
            if before.get(fid) != revision:
                log.info("flow %s: new revision %s (was %s)", fid, revision, before.get(fid) or "none",
                         extra={"flow": fid, "revision": revision})
        for path, exc in problems.items():
            log.error("flow file %s rejected; the previous revision keeps running:\n%s", path, exc,
                      extra={"file": path})
        if not problems:
            log.info("flows directory reloaded (%d changed file(s))", len(changed))
        return problems

    async def run(self) -> None:
        if self.interval_seconds <= 0:
            return
        await every(self.interval_seconds, self.check, what="flows reload", pause_first=True)
