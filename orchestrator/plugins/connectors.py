"""Connectors: the only I/O a flow performs (`call: calendar.find_slots`).

A connector is a class derived from `Connector` with a `name` and a mapping of named actions.
Each action has typed arguments (a msgspec Struct, converted from the rendered `args:` of the
state) and returns a `ConnectorResult` whose outcome picks the route (`on: {ok, empty,
conflict, error}`). Implementations live in `integrations/`, one module each; other installed
packages add theirs through the `orchestrator.connectors` entry-point group, built with
`from_settings(config)` from their own typed settings (`orchestrator.plugins.base`).

    class Weather(Connector):
        name = "weather"

        def __init__(self) -> None:
            self.actions = {"today": Action(TodayArgs, self.today)}

An action never raises to the engine for an expected failure: it returns `error`. The
engine also turns timeouts and unexpected exceptions into `error` with a log line. Optional
hooks (defaults do nothing): `close()`, and `erase_contact` / `export_contact` for a connector
keeping data about contacts outside the session store (`ErasableConnector`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import msgspec

from orchestrator.errors import ConnectorError, UnknownConnectorError
from orchestrator.plugins.base import Plugin, Registry, load

log = logging.getLogger("orchestrator.plugins.connectors")

Outcome = Literal["ok", "empty", "conflict", "error"]
OUTCOMES: tuple[str, ...] = ("ok", "empty", "conflict", "error")
ENTRY_POINT_GROUP = "orchestrator.connectors"


class ConnectorResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    outcome: Outcome
    value: Any = None  # saved into the flow variable named by `save:`
    detail: str | None = None  # for the transcript and logs (never secrets)
    # The business is closed on this ISO date, the day the contact asked for (find_slots):
    # the engine routes `closed` when the state has it, else says a notice before going on.
    closed: str | None = None
    closed_for: str | None = None  # ... closed for this one person only (their day off): their name
    # The day asked for lies past how far ahead the business books (settings.max_ahead): the
    # last bookable ISO date. The engine routes `too_far`, else says a notice.
    too_far: str | None = None


class CallContext(msgspec.Struct, kw_only=True):
    """What a connector may know of the conversation calling it."""

    session_id: str  # stable per conversation: the idempotency key for bookings
    flow: str
    contact: str
    timezone: str
    language: str
    now: float  # the engine's clock (epoch seconds)
    settings: Any = None  # the flow's schema.Settings (business hours, closures...)
    vars: dict[str, Any] = {}


ActionFn = Callable[[Any, CallContext], Awaitable[ConnectorResult]]

ERASED_TITLE = "Appointment (contact erased)"  # what a pseudonymised booking is called afterwards


class ErasureContext(msgspec.Struct, kw_only=True):
    """What a connector's optional erasure hooks get (admin `DELETE /api/contacts/{phone}` and
    the export `GET`). A connector is configured for one business (its calendar, its CRM
    account), so it touches only what it holds there."""

    now: float  # epoch seconds
    businesses: list[str] = []  # the business numbers / WhatsApp ids this deployment answers for


@runtime_checkable
class ErasableConnector(Protocol):
    """Optional hooks of a connector that keeps data about contacts outside the session store.

    `erase_contact` removes or pseudonymises every record it wrote about `phone` (a booking
    keeps its slot, but no longer names the person or the phone) and returns how many records
    it changed; it raises on failure (the erasure is then reported incomplete and can be run
    again: it must be idempotent). `export_contact` (optional) lists what it holds."""

    async def erase_contact(self, phone: str, ctx: ErasureContext) -> int: ...


class Action(msgspec.Struct, frozen=True):
    args: type  # a msgspec Struct type; the state's rendered args convert into it
    fn: ActionFn
    description: str = ""


class Connector(Plugin):
    """Base of every connector: a `name` and its `actions` (set them in `__init__`)."""

    name: ClassVar[str] = ""
    actions: Mapping[str, Action] = {}

    async def close(self) -> None:
        return None


class StepWatch:
    """What a waiting webhook may know of its turn while it runs (voice: whether to say a
    filler). The runtime sets one in `STEP_WATCH` before it starts the turn's task; the
    turn's copy of the context shares the object."""

    __slots__ = ("action", "on_begun", "settings")

    def __init__(self, on_begun: Callable[[Any], None] | None = None) -> None:
        self.action: str | None = None  # the connector action running now ("calendar.find_slots")
        self.settings: Any = None  # the conversation's flow settings, once known
        self.on_begun = on_begun  # called once the turn holds its lock and knows its flow

    def begun(self, settings: Any) -> None:
        self.settings = settings
        if self.on_begun is not None:
            self.on_begun(settings)


STEP_WATCH: contextvars.ContextVar[StepWatch | None] = contextvars.ContextVar("step_watch", default=None)


class ConnectorRegistry(Registry[Connector]):
    """Connectors by name; `register` refuses a duplicate name."""

    kind = "connector"

    def __init__(self) -> None:
        super().__init__()
        self._unconfigured: dict[str, tuple[str, ...]] = {}  # installed, not configured: the variables to set

    def unconfigured(self) -> dict[str, tuple[str, ...]]:
        """Installed connectors this deployment left out (not configured): name -> the variables
        that would configure them: the required settings, else the secret ones, else all."""
        return {k: v for k, v in self._unconfigured.items() if k not in self}

    def unknown(self, message: str) -> LookupError:
        return UnknownConnectorError(message)

    def action(self, dotted: str) -> Action:
        """`"calendar.book"` -> its Action, or UnknownConnectorError naming what exists."""
        name, _, action = dotted.partition(".")
        connector = self.get(name)
        try:
            return connector.actions[action]
        except KeyError:
            raise UnknownConnectorError(
                f"connector {name!r} has no action {action!r}; it has: {', '.join(sorted(connector.actions))}"
            ) from None

    def has_action(self, dotted: str) -> bool:
        try:
            self.action(dotted)
        except UnknownConnectorError:
            return False
        return True

    def load_entry_points(self, env: Mapping[str, str] | None = None) -> None:
        """Register every configured connector of the `orchestrator.connectors` entry points,
        built with `from_settings` from `env` (default: the process environment). Names already
        registered explicitly win; a plugin that fails to import is logged and skipped; a
        configuration error (a bad value, half-done settings) is raised."""
        for built in load(ENTRY_POINT_GROUP, env, skip=frozenset(self.names())):
            if built.configured:
                self.register(built.instance, built.installed.name)
                continue
            fields = built.installed.settings_fields()
            needed = [f for f in fields if f.required] or [f for f in fields if f.secret] or fields
            self._unconfigured[built.installed.name] = tuple(f.env for f in needed)

    async def call(
        self, dotted: str, raw_args: dict[str, Any], ctx: CallContext, timeout_seconds: float
    ) -> ConnectorResult:
        """Run one action with a timeout; every failure becomes the `error` outcome."""
        try:
            action = self.action(dotted)
            args: Any = msgspec.convert(raw_args, action.args, strict=False)
        except (UnknownConnectorError, msgspec.ValidationError) as exc:
            log.error("connector %s: bad call: %s", dotted, exc)
            return ConnectorResult(outcome="error", detail=str(exc))
        watch = STEP_WATCH.get()
        if watch is not None:
            watch.action = dotted
        try:
            return await asyncio.wait_for(action.fn(args, ctx), timeout_seconds)
        except TimeoutError:
            log.error("connector %s timed out after %.1fs", dotted, timeout_seconds)
            return ConnectorResult(outcome="error", detail=f"timed out after {timeout_seconds:g}s")
        except ConnectorError as exc:
            log.error("connector %s failed: %s", dotted, exc)
            return ConnectorResult(outcome="error", detail=str(exc))
        except Exception as exc:
            log.exception("connector %s raised", dotted)
            return ConnectorResult(outcome="error", detail=f"{type(exc).__name__}: {exc}")
        finally:
            if watch is not None:
                watch.action = None


def default_connectors(env: Mapping[str, str] | None = None) -> ConnectorRegistry:
    """Every installed connector, configured from `env` (default: the process environment).

    The `calendar` is Google Calendar when GOOGLE_APPLICATION_CREDENTIALS and
    GOOGLE_CALENDAR_ID are set, else the embedded SQLite calendar (ORCHESTRATOR_CALENDAR_DB)."""
    registry = ConnectorRegistry()
    registry.load_entry_points(env)
    return registry
