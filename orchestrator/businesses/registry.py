"""The businesses one server runs (docs/SPEC.md §10): numbers -> business, and each business's own
runtime (its flows, channel adapters built from its credentials, connectors, store namespace).

    registry = BusinessRegistry(settings)            # ORCHESTRATOR_BUSINESSES_DIR set
    registry.prepare()                               # sync: configs, secrets, adapters (for routes)
    await registry.start()                           # stores, flows, runtimes
    business = registry.for_number("+34910000001")   # None: not ours (a 404)
    await registry.run()                             # background: every business's jobs + reload

A business is isolated by construction: its runtime reads and writes only under its own key
prefix (`<ORCHESTRATOR_KEY_PREFIX>:biz:<id>`; the store's scripts and key layout are unchanged),
its adapters hold only its credentials, its embedded calendar and CRM are files of its own. A
business that cannot be built (a broken business.yaml, a secret missing) is refused with its name
and the others serve; on reload a broken edit keeps the last good configuration serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.businesses.loader import FILE, LoadedBusiness, business_folders, load_businesses_dir
from orchestrator.businesses.secrets import resolve
from orchestrator.errors import ConfigError, FlowError
from orchestrator.flow.loader import MAX_FLOW_BYTES, LoadedFlow, load_flow, load_flow_text, revision_of
from orchestrator.plugins.base import Installed, configure, discover, parse_prefer
from orchestrator.plugins.channels import ENTRY_POINT_GROUP as CHANNELS_GROUP
from orchestrator.plugins.channels import ChannelRegistry
from orchestrator.plugins.connectors import ENTRY_POINT_GROUP as CONNECTORS_GROUP
from orchestrator.plugins.connectors import ConnectorRegistry
from orchestrator.settings import AppSettings

log = logging.getLogger("orchestrator.businesses")
DATA = ".data"  # a business's own files (embedded calendar, CRM) inside its folder, unless a data dir is set
# what a business's credentials replace: never inherited from the deployment's environment
CREDENTIAL_ENV = (
    "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID",
    "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CALENDAR_ID",
    "ORCHESTRATOR_CALENDAR_DB", "ORCHESTRATOR_CRM_DB",
)


STAGGER_SECONDS = 0.01  # between two businesses' first background runs at start-up
POLLS_AT_FULL_RATE = 50  # past this many businesses their pollers slow down in proportion (idle cost bounded)


class SharedLoader:
    """`load_flow` memoised by the file's content: a flow file copied into many businesses is parsed
    once (the catalog's compile cache then skips its validation and compilation too)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._by_revision: dict[str, LoadedFlow] = {}

    def __call__(self, path: Path) -> LoadedFlow:
        try:
            if path.stat().st_size > MAX_FLOW_BYTES:
                return load_flow(path)  # refused there, with its reason
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return load_flow(path)  # the loader's own diagnostics
        cached = self._by_revision.get(revision_of(text))
        if cached is not None and cached.source == text:
            return dataclasses.replace(cached, filename=str(path), warnings=list(cached.warnings))
        loaded = load_flow_text(text, str(path))
        if len(self._by_revision) >= self.size:
            self._by_revision.pop(next(iter(self._by_revision)))
        self._by_revision[loaded.revision] = loaded
        return loaded


@dataclass
class Business:
    """One business as served: its checked configuration, settings, adapters and runtime."""

    loaded: LoadedBusiness
    settings: AppSettings
    channels: ChannelRegistry
    connectors: ConnectorRegistry
    signature: tuple[Any, ...] = ()  # what it was built from: a changed one is rebuilt on reload
    runtime: Any = None  # runtime.pipeline.Runtime, once started
    call_limit: Any = None  # limits.CallLimit when limits.concurrent_calls is set
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)  # the tasks' coroutines (closed if a task never started)

    @property
    def id(self) -> str:
        return self.loaded.id

    @property
    def config(self) -> Any:
        return self.loaded.config

    @property
    def name(self) -> str:
        return self.loaded.config.name or self.loaded.id


class BusinessRegistry:
    def __init__(self, settings: AppSettings, *, clock: Any = time.time) -> None:
        if not settings.businesses_dir:
            raise ConfigError("BusinessRegistry needs ORCHESTRATOR_BUSINESSES_DIR")
        self.settings = settings
        self.root = Path(settings.businesses_dir)
        self.clock = clock
        self.businesses: dict[str, Business] = {}
        self.refused: dict[str, str] = {}  # folder -> why it is not served
        self._numbers: dict[str, str] = {}  # number / phone-number id -> business id
        self._installed: dict[str, list[Installed]] = {}
        self._seen: dict[str, tuple[float, int]] = {}
        self._cache: Any = None  # one compiled-flow cache for every business (revisions are content hashes)
        self._started = False
        self.operator_store: Any = None  # the operator's own audit log (actions on no single business)
        self.loader = SharedLoader()
        self._count = 1  # businesses in the directory: sets how often each one polls

    # ---- building ----------------------------------------------------------------------------
    def _plugins(self, group: str) -> list[Installed]:
        if group not in self._installed:  # entry points scanned once, not once per business
            prefer = parse_prefer(self.settings.environ.get("ORCHESTRATOR_PLUGINS_PREFER"))
            self._installed[group] = [i for i in discover(group, prefer) if not i.error]
        return self._installed[group]

    def business_settings(self, loaded: LoadedBusiness) -> AppSettings:
        """The deployment's settings with this business's flows, routes, retention, key prefix and
        credentials (resolved now: MissingSecret names the reference)."""
        c = loaded.config
        env = {k: v for k, v in self.settings.environ.items() if k not in CREDENTIAL_ENV}
        src = self.settings.environ
        values: dict[str, Any] = {n: None for n in (
            "twilio_account_sid", "twilio_auth_token", "twilio_from_number", "whatsapp_token",
            "whatsapp_phone_number_id", "whatsapp_app_secret", "whatsapp_verify_token",
            "google_application_credentials", "google_calendar_id")}
        where = f"business {c.business!r} ({loaded.filename})"
        tw = c.credentials.twilio
        if tw is not None:
            values["twilio_account_sid"] = resolve(tw.account_sid, src, what=f"{where}: credentials.twilio.account_sid")
            values["twilio_auth_token"] = resolve(tw.auth_token, src, what=f"{where}: credentials.twilio.auth_token")
            sender = resolve(tw.from_, src, what=f"{where}: credentials.twilio.from") if tw.from_ else None
            values["twilio_from_number"] = sender or (c.numbers.twilio[0] if c.numbers.twilio else None)
        else:
            env.pop("TWILIO_API_BASE", None)
        wa = c.credentials.whatsapp
        if wa is not None:
            values["whatsapp_token"] = resolve(wa.token, src, what=f"{where}: credentials.whatsapp.token")
            values["whatsapp_app_secret"] = resolve(wa.app_secret, src,
                                                    what=f"{where}: credentials.whatsapp.app_secret")
            values["whatsapp_verify_token"] = resolve(wa.verify_token, src,
                                                      what=f"{where}: credentials.whatsapp.verify_token")
            values["whatsapp_phone_number_id"] = c.numbers.whatsapp[0] if c.numbers.whatsapp else None
        cal = c.credentials.calendar
        data = self.data_dir(c.business)
        if cal.kind == "google":
            values["google_calendar_id"] = resolve(cal.calendar_id or "", src, what=f"{where}: calendar_id")
            if cal.credentials:
                values["google_application_credentials"] = resolve(
                    cal.credentials, src, what=f"{where}: credentials.calendar.credentials", path_only=True)
        env["ORCHESTRATOR_CALENDAR_DB"] = str(data / "calendar.sqlite3")
        env["ORCHESTRATOR_CRM_DB"] = str(data / "crm.sqlite3")
        routes = ",".join(f"{k.removeprefix('whatsapp:')}={v}" for k, v in c.routes.items())
        # each business polls its own timers, outbox and flows folder; with hundreds of businesses
        # that idle work would grow without bound, so the polls slow down in proportion (a commit
        # still wakes its outbox sender at once; timers are reminders minutes away)
        slower = max(1.0, self._count / POLLS_AT_FULL_RATE)
        return msgspec.structs.replace(
            self.settings, **values, flows_dir=str(loaded.flows_dir), default_flow=c.default_flow,
            timer_poll_seconds=self.settings.timer_poll_seconds * slower,
            reload_seconds=self.settings.reload_seconds * slower,
            routes_spec=routes or None, key_prefix=f"{self.settings.key_prefix}:biz:{c.business}",
            retention_days=c.retention_days if c.retention_days is not None else self.settings.retention_days,
            environ=env,
        )

    def data_dir(self, business_id: str) -> Path:
        base = Path(self.settings.businesses_data_dir) / business_id if self.settings.businesses_data_dir \
            else self.root / business_id / DATA
        return base

    def build(self, loaded: LoadedBusiness) -> Business:
        """Settings, channel adapters and connectors of one business (no I/O but reading secrets
        and creating its data folder). ConfigError names the business and what is missing."""
        settings = self.business_settings(loaded)
        self.data_dir(loaded.id).mkdir(parents=True, exist_ok=True)
        environ = settings.plugin_environ()
        channels = ChannelRegistry()
        connectors = ConnectorRegistry()
        try:
            for installed in self._plugins(CHANNELS_GROUP):
                built = configure(installed, environ)
                if built.configured:
                    channels.register(built.instance, installed.name)
            for installed in self._plugins(CONNECTORS_GROUP):
                built = configure(installed, environ)
                if built.configured:
                    connectors.register(built.instance, installed.name)
        except ConfigError as exc:
            raise ConfigError(f"business {loaded.id!r} ({loaded.filename}): {exc}") from None
        signature = (loaded.source, tuple(sorted((k, environ.get(k)) for k in CREDENTIAL_ENV)),
                     settings.twilio_auth_token, settings.whatsapp_app_secret, settings.whatsapp_token)
        return Business(loaded=loaded, settings=settings, channels=channels, connectors=connectors,
                        signature=signature)

    def prepare(self) -> list[str]:
        """Load and build every business (before the app's routes exist); the refused ones are
        logged with their reasons. Returns the ids built."""
        found, problems = load_businesses_dir(self.root)
        self._count = max(1, len(found))
        self.refused = {}
        for folder, exc in problems.items():
            self._refuse(folder, str(exc))
        for business_id, loaded in found.items():
            try:
                business = self.build(loaded)
            except ConfigError as exc:
                self._refuse(str(loaded.folder), str(exc))
                continue
            self.businesses[business_id] = business
        self._index()
        self._seen = self._snapshot()
        log.info("businesses loaded: %d served, %d refused", len(self.businesses), len(self.refused),
                 extra={"businesses": sorted(self.businesses)})
        return sorted(self.businesses)

    def _refuse(self, folder: str, why: str) -> None:
        self.refused[folder] = why
        log.error("business %s refused; the other businesses are served:\n%s", Path(folder).name, why,
                  extra={"business": Path(folder).name})

    def _index(self) -> None:
        numbers: dict[str, str] = {}
        for business in self.businesses.values():
            for number in business.config.all_numbers():
                numbers.setdefault(number, business.id)
        self._numbers = numbers

    async def start(self) -> None:
        """Open each business's store namespace and load its flows (once, at start-up)."""
        from orchestrator.stores.factory import open_store

        s = self.settings
        self.operator_store = await open_store(s.redis_url, f"{s.key_prefix}:operator",
                                               timeout_seconds=s.redis_timeout_seconds,
                                               wait_replicas=s.redis_wait_replicas)
        for business in list(self.businesses.values()):
            try:
                await self._start(business)
            except Exception as exc:
                self.businesses.pop(business.id, None)
                self._refuse(str(business.loaded.folder), f"{type(exc).__name__}: {exc}")
        self._index()
        self._started = True
        await self._warm_up()

    async def _warm_up(self) -> None:
        """dateparser's import and first parse (~100+ ms) paid here, not in a first turn."""
        from orchestrator.engine import timeparse

        languages: set[str] = set()
        for business in self.businesses.values():
            catalog = business.runtime.catalog
            for flow_id in catalog.flow_ids():
                languages.add((await catalog.latest(flow_id)).settings.language)
        first = next(iter(self.businesses.values()), None)
        for language in sorted(languages) or ["en"]:
            if first is not None:
                await first.runtime.catalog.off_loop(timeparse.warm_up, language)

    async def _start(self, business: Business, store: Any = None) -> None:
        from orchestrator.engine import compiler
        from orchestrator.runtime.catalog import FlowCatalog
        from orchestrator.runtime.pipeline import Runtime
        from orchestrator.stores.factory import open_store

        s = business.settings
        if self._cache is None:
            self._cache = compiler.FlowCache(max(64, 4 * len(self.businesses)))
        if store is None:  # a reloaded business keeps its store (the in-memory one holds its conversations)
            store = await open_store(s.redis_url, s.key_prefix, timeout_seconds=s.redis_timeout_seconds,
                                     wait_replicas=s.redis_wait_replicas)
        catalog = FlowCatalog(store, business.connectors, flows_dir=s.flows_dir, routes=s.routes(),
                              default_flow=s.default_flow)
        catalog.cache = self._cache
        catalog.loader = self.loader
        for path, problem in (await catalog.reload()).items():
            log.error("business %s: flow file %s is invalid and was skipped:\n%s", business.id, path, problem,
                      extra={"business": business.id})
        runtime = Runtime(s, store, catalog, business.connectors, business.channels, clock=self.clock)
        runtime.business_id = business.id
        from orchestrator.businesses.limits import CallLimit, DailyLimit

        runtime.admission = DailyLimit(business, store, clock=self.clock).admit \
            if business.config.limits.conversations_per_day else None
        calls = business.config.limits.concurrent_calls
        business.call_limit = CallLimit(calls, store, clock=self.clock) if calls else None
        business.runtime = runtime

    # ---- lookups ------------------------------------------------------------------------------
    def for_number(self, number: str | None) -> Business | None:
        if not number:
            return None
        business_id = self._numbers.get(number.removeprefix("whatsapp:"))
        return self.businesses.get(business_id) if business_id else None

    def for_session(self, session_id: str) -> Business | None:
        """The business of a session id (`<business number>:<contact>`)."""
        head, _, rest = session_id.partition(":")
        if head == "whatsapp":  # WhatsApp over Twilio: `whatsapp:+1555...:<contact>`
            head = rest.partition(":")[0]
        return self.for_number(head)

    def for_account(self, account_sid: str | None) -> Business | None:
        """The business whose Twilio account this is, when exactly one business uses it."""
        if not account_sid:
            return None
        found = [b for b in self.businesses.values() if b.settings.twilio_account_sid == account_sid]
        return found[0] if len(found) == 1 else None

    def get(self, business_id: str) -> Business | None:
        return self.businesses.get(business_id)

    def ids(self) -> list[str]:
        return sorted(self.businesses)

    def channel_names(self) -> list[str]:
        return sorted({name for b in self.businesses.values() for name in b.channels.names()})

    def template_channels(self) -> ChannelRegistry:
        """One adapter per channel name (the first business's): what declares the webhook routes."""
        out = ChannelRegistry()
        for business in sorted(self.businesses.values(), key=lambda b: b.id):
            for name in business.channels.names():
                if name not in out:
                    out.register(business.channels.get(name), name)
        return out

    # ---- running ------------------------------------------------------------------------------
    def _jobs(self, business: Business, delay: float = 0.0) -> list[asyncio.Task[Any]]:
        from orchestrator.web.operations import background_jobs

        runtime = business.runtime
        coros = [runtime.run_background(), *background_jobs(runtime, business.settings)]
        business.jobs = coros
        return [asyncio.create_task(_after(delay, c), name=f"business:{business.id}") for c in coros]

    async def run(self) -> None:
        """Every business's background jobs (timers, outbox, flows reload, retention) and the
        businesses directory reload, until cancelled."""
        from orchestrator.runtime.periodic import every

        # the businesses' first polls and retention passes spread over a few milliseconds each,
        # so hundreds of them do not all hit the store the moment the server starts answering
        for n, business in enumerate(self.businesses.values()):
            business.tasks = self._jobs(business, delay=n * STAGGER_SECONDS)
        try:
            if self.settings.reload_seconds > 0:
                await every(self.settings.reload_seconds, self.check, what="businesses reload", pause_first=True)
            else:
                await asyncio.Event().wait()
        finally:
            for business in self.businesses.values():
                await _cancel(business.tasks)
                for job in business.jobs:
                    job.close()

    def _snapshot(self) -> dict[str, tuple[float, int]]:
        """(mtime, size) of every business.yaml and of every `file:` secret a served business
        references (a rotated secret file rebuilds its business)."""
        out: dict[str, tuple[float, int]] = {}
        paths = [folder / FILE for folder in business_folders(self.root)]
        for business in self.businesses.values():
            paths += [Path(ref[5:]) for ref in _file_references(business.config)]
        for path in paths:
            with contextlib.suppress(OSError):
                st = path.stat()
                out[str(path)] = (st.st_mtime, st.st_size)
        return out

    async def check(self) -> dict[str, str] | None:
        """One reload poll: businesses added, edited or removed take effect; a broken edit (or a
        secret gone missing) is logged and the last good configuration keeps serving.
        None when nothing changed; else the refusals of this reload by folder."""
        now = self._snapshot()
        if now == self._seen:
            return None
        self._seen = now
        return await self.reload()

    async def reload(self) -> dict[str, str]:
        found, problems = load_businesses_dir(self.root)
        self._count = max(1, len(found))
        refused: dict[str, str] = {str(k): str(v) for k, v in problems.items()}
        folders = {str(b.loaded.folder): b.id for b in self.businesses.values()}
        for folder, why in refused.items():
            kept = folders.get(folder)
            log.error("business %s: the edit is refused%s:\n%s", Path(folder).name,
                      "; the last good configuration keeps serving" if kept else "", why,
                      extra={"business": Path(folder).name})
        present = set(found) | {folders[f] for f in refused if f in folders}
        for business_id in sorted(set(self.businesses) - present):  # folder (or business.yaml) removed
            gone = self.businesses.pop(business_id)
            await self._stop(gone)
            log.info("business %s removed", business_id, extra={"business": business_id})
        for business_id, loaded in sorted(found.items()):
            old = self.businesses.get(business_id)
            try:
                new = self.build(loaded)
                if old is not None and old.signature == new.signature:
                    continue
                await self._start(new, old.runtime.store if old is not None and old.runtime is not None else None)
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConfigError | FlowError) else str(exc)
                refused[str(loaded.folder)] = why
                log.error("business %s: the edit is refused%s:\n%s", business_id,
                          "; the last good configuration keeps serving" if old else "", why,
                          extra={"business": business_id})
                continue
            self.businesses[business_id] = new
            if self._started:
                new.tasks = self._jobs(new)
            if old is not None:
                await self._stop(old, keep_store=True)
            log.info("business %s %s", business_id, "reloaded" if old else "added", extra={"business": business_id})
        self._index()
        self.refused = refused
        self._seen = self._snapshot()
        return refused

    async def _stop(self, business: Business, *, keep_store: bool = False) -> None:
        await _cancel(business.tasks)
        for job in business.jobs:
            job.close()  # a finished one: nothing; one whose task never started: no "never awaited"
        business.tasks, business.jobs = [], []
        runtime = business.runtime
        if runtime is None:
            return
        with contextlib.suppress(Exception):
            if keep_store:  # the rebuilt business goes on with it: close only the old adapters
                for name in runtime.channels.names():
                    close = getattr(runtime.channels.get(name), "close", None)
                    if close is not None:
                        await close()
            else:
                await runtime.close()

    async def close(self) -> None:
        for business in list(self.businesses.values()):
            await self._stop(business)
        if self.operator_store is not None:
            with contextlib.suppress(Exception):
                await self.operator_store.close()


def _file_references(config: Any) -> list[str]:
    creds: dict[str, Any] = msgspec.to_builtins(config.credentials)
    return [v for section in creds.values() if isinstance(section, dict)
            for v in section.values() if isinstance(v, str) and v.startswith("file:")]


async def _after(delay: float, job: Any) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    await job


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
