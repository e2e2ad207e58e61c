"""The flows a server runs: every revision compiled once, conversations pinned to theirs.

    catalog = FlowCatalog(store, connectors, flows_dir="flows", routes={...}, default_flow=None)
    problems = await catalog.reload()          # invalid files are reported and skipped
    compiled = await catalog.latest("dental_booking")   # for new conversations
    compiled = await catalog.for_revision(session.revision)  # for running ones
    flow_id = catalog.route("+15551230000")

Each revision's YAML source is recorded in the store, so another process (or this one
after a restart, or after the file changed) can compile the exact revision a running
conversation started on.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from orchestrator.engine.compiler import CompiledFlow, FlowCache, compile_flow
from orchestrator.errors import Diagnostic, FlowError, OrchestratorError
from orchestrator.flow.loader import LoadedFlow, load_flow, load_flow_text
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.stores.base import SessionStore

log = logging.getLogger("orchestrator.runtime.catalog")
T = TypeVar("T")
LATEST_CHECK_SECONDS = 2.0  # how stale another process's newer revision may be seen


class NoRoute(OrchestratorError, LookupError):
    """No flow for this route key and no default flow."""


def _validate(loaded: LoadedFlow, connectors: ConnectorRegistry) -> CompiledFlow:
    """Semantic checks (H1's validator when present), then compile. Raises FlowError."""
    try:
        validate: ModuleType | None = importlib.import_module("orchestrator.flow.validate")
    except ImportError:  # the validator is optional at this layer; compile still checks connectors
        validate = None
    if validate is not None:
        validate.check(loaded, connectors)
        for warning in loaded.warnings:
            log.warning("flow %s: %s", loaded.filename, warning.format())
    return compile_flow(loaded, loaded.revision, connectors=connectors)


class FlowCatalog:
    def __init__(
        self,
        store: SessionStore,
        connectors: ConnectorRegistry,
        *,
        flows_dir: str | Path | None = "flows",
        routes: dict[str, str] | None = None,
        default_flow: str | None = None,
        cache_size: int = 64,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.flows_dir = Path(flows_dir) if flows_dir else None
        self.routes = dict(routes or {})
        self.default_flow = default_flow
        self.cache = FlowCache(cache_size)
        self.problems: dict[str, FlowError] = {}  # file name -> why it was skipped
        self._latest: dict[str, CompiledFlow] = {}  # flow id -> newest revision known here
        self._files: dict[str, tuple[str, str]] = {}  # file path -> (flow id, revision)
        self._checked: dict[str, float] = {}  # flow id -> monotonic time of the last store check
        self._heavy: anyio.CapacityLimiter | None = None
        self.loader: Callable[[Path], LoadedFlow] = load_flow  # many businesses share a memo of loaded files

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy flow work (load, validate, compile, draw) in a worker thread, one job
        at a time per process, so the event loop keeps answering webhooks and /health while a
        large flow is uploaded or drawn (the loop still gets the GIL every few milliseconds)."""
        if self._heavy is None:
            self._heavy = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._heavy)

    # loading -------------------------------------------------------------------------
    async def reload(self) -> dict[str, FlowError]:
        """Scan the flows directory; a changed file is a new revision. An invalid file (or
        edit) is reported in the result and skipped: the previous revision stays in service."""
        self.problems = {}
        if self.flows_dir is None:
            return {}
        if not self.flows_dir.is_dir():
            log.warning("flows directory %s does not exist; no flows loaded", self.flows_dir)
            return {}
        for path in sorted(self.flows_dir.glob("*.y*ml")):
            try:
                loaded = await self.off_loop(self.loader, path)
                if self._files.get(str(path), ("", ""))[1] == loaded.revision:
                    continue
                compiled = self.cache.get(loaded.revision) or self.cache.put(
                    await self.off_loop(_validate, loaded, self.connectors))
            except FlowError as exc:
                self.problems[str(path)] = exc
                log.warning("flow file %s skipped: %s", path, exc)
                continue
            await self._publish(loaded, compiled)
            self._files[str(path)] = (compiled.id, compiled.revision)
        return dict(self.problems)

    async def put_source(self, flow_id: str, text: str, *, write_file: bool = True) -> CompiledFlow:
        """An admin upload: validate, record and serve as the newest revision; FlowError if invalid.

        The file in the flows directory is replaced too (atomically) so restarts keep it; a
        source refused by the loader's limits or the validator is neither stored nor written."""
        loaded = await self.off_loop(load_flow_text, text, f"{flow_id}.yaml")
        if loaded.flow.flow != flow_id:
            raise FlowError([loaded.diagnostic(
                "$.flow", f"the file says flow {loaded.flow.flow!r} but it was uploaded as {flow_id!r}",
                hint=f"write 'flow: {flow_id}' or upload it under /api/flows/{loaded.flow.flow}",
            )])
        compiled = self.cache.get(loaded.revision) or self.cache.put(
            await self.off_loop(_validate, loaded, self.connectors))
        await self._publish(loaded, compiled)
        if write_file and self.flows_dir is not None and self.flows_dir.is_dir():
            path = self.flows_dir / f"{flow_id}.yaml"
            tmp = path.with_suffix(".yaml.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            self._files[str(path)] = (flow_id, loaded.revision)
        return compiled

    async def _publish(self, loaded: LoadedFlow, compiled: CompiledFlow) -> None:
        await self.store.put_revision(compiled.id, compiled.revision, loaded.source)
        self._latest[compiled.id] = compiled
        self._checked[compiled.id] = time.monotonic()
        log.info("flow %s revision %s loaded from %s", compiled.id, compiled.revision, loaded.filename)

    # lookups -------------------------------------------------------------------------
    def flow_ids(self) -> list[str]:
        return sorted(self._latest)

    async def latest(self, flow_id: str) -> CompiledFlow:
        """The newest revision of a flow, for new conversations (a revision published by
        another process is picked up within LATEST_CHECK_SECONDS)."""
        now = time.monotonic()
        if now - self._checked.get(flow_id, 0.0) >= LATEST_CHECK_SECONDS:
            self._checked[flow_id] = now
            stored = await self.store.latest_revision(flow_id)
            current = self._latest.get(flow_id)
            if stored and (current is None or stored != current.revision):
                known = await self.store.list_revisions(flow_id)
                if current is None or current.revision not in known or known.index(stored) > known.index(
                    current.revision
                ):
                    self._latest[flow_id] = await self.for_revision(stored)
        compiled = self._latest.get(flow_id)
        if compiled is None:
            raise NoRoute(
                f"flow {flow_id!r} is not loaded; loaded: {', '.join(self.flow_ids()) or 'none'} "
                "(check the flows directory and the validation errors at start-up)"
            )
        return compiled

    async def for_revision(self, revision: str) -> CompiledFlow:
        """The compiled flow of an exact revision: from memory, else compiled from the store."""
        compiled = self.cache.get(revision)
        if compiled is not None:
            return compiled
        source = await self.store.get_revision(revision)
        if source is None:
            raise FlowError([Diagnostic(
                file="<store>", line=1, col=1,
                message=f"flow revision {revision!r} is not in the store (expired or never published)",
                hint="the conversation cannot continue on its revision; it will start over",
            )])
        return self.cache.put(await self.off_loop(self._compile_revision, source, revision))

    def _compile_revision(self, source: str, revision: str) -> CompiledFlow:
        return compile_flow(load_flow_text(source, f"<revision {revision}>"), revision, connectors=self.connectors)

    def route(self, route_key: str | None) -> str:
        """Route key (number called, WhatsApp phone-number id) -> flow id: the routing table,
        then ORCHESTRATOR_DEFAULT_FLOW, then the only flow when a single one is loaded."""
        if route_key and route_key in self.routes:
            return self.routes[route_key]
        if self.default_flow:
            return self.default_flow
        if len(self._latest) == 1:
            return next(iter(self._latest))
        raise NoRoute(
            f"no flow for route {route_key!r}: not in ORCHESTRATOR_ROUTES and ORCHESTRATOR_DEFAULT_FLOW "
            f"is unset (loaded flows: {', '.join(self.flow_ids()) or 'none'}); add '{route_key}=<flow id>' "
            "to ORCHESTRATOR_ROUTES or set ORCHESTRATOR_DEFAULT_FLOW"
        )
