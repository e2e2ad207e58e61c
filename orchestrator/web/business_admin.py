"""The admin API with many businesses (docs/SPEC.md §10): who may reach which business under /api.

A business admin's token reaches only its business (another business's conversation, flow,
contact, lead or analytics is a 404: never a 403 that confirms it exists); `staff` may read
conversations, bookings (leads) and analytics, any other route is a 403. The operator
(ORCHESTRATOR_ADMIN_TOKEN) reaches every business, naming one with `?business=<id>` (or the
`X-Business` header) when there are several (`GET /api/conversations` without one lists every
business's, and a conversation id names its business), and lists them with `GET /api/businesses`. The
chosen business's runtime and settings are what the route handlers get as `runtime` / `settings`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.exceptions import ValidationException as BadQuery
from litestar.handlers.base import BaseRouteHandler

from orchestrator.businesses.access import Principal, principal, reach, staff_may
from orchestrator.records.analytics import parse_conversation_id
from orchestrator.settings import AppSettings
from orchestrator.web.app import BUSINESS_RUNTIME, BUSINESS_SETTINGS

PRINCIPAL = "orchestrator.principal"
BUSINESS_ID = "orchestrator.business_id"
OPERATOR_LEVEL = "*"  # the business of an operator's entry that concerns no single business


class OperatorView(msgspec.Struct):
    """What the operator-level routes (`/api/audit` without a business) read: the operator's log."""

    store: Any
    clock: Any = None


class _MergedRecorder:
    """The conversation lists of every business as one (the operator's `GET /api/conversations`)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    async def list_records(self, *, limit: int = 100, offset: int = 0, **filters: Any) -> list[Any]:
        runtimes = [b.runtime for b in self.registry.businesses.values() if b.runtime is not None]
        found = await asyncio.gather(*(r.recorder.list_records(limit=limit + offset, offset=0, **filters)
                                       for r in runtimes))
        rows = sorted((row for part in found for row in part), key=lambda r: r.started_at, reverse=True)
        return rows[offset:offset + limit]


class AllBusinesses:
    """What the operator's cross-business routes read (only `recorder.list_records`)."""

    def __init__(self, registry: Any) -> None:
        self.recorder = _MergedRecorder(registry)


class AdminSummary(msgspec.Struct, kw_only=True):
    name: str
    role: str


class BusinessSummary(msgspec.Struct, kw_only=True):
    id: str
    name: str
    timezone: str
    numbers: list[str]
    channels: list[str]
    flows: list[str]
    default_flow: str | None
    admins: list[AdminSummary]
    retention_days: float
    conversations_per_day: int | None


class BusinessesReport(msgspec.Struct, kw_only=True):
    businesses: list[BusinessSummary]
    refused: dict[str, str]  # business folder -> why it is not served


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, given = header.partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def state_of(scope: Any) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, registry: Any,
              settings: AppSettings) -> None:
    """The /api guard with many businesses; sets the chosen business in the request's state."""
    who = principal(bearer(connection.headers.get("authorization")), registry, settings.admin_token)
    if who is None:
        raise NotAuthorizedException(detail="missing or wrong bearer token (Authorization: Bearer <token>): the "
                                            "operator's ORCHESTRATOR_ADMIN_TOKEN or a business admin's token")
    state = state_of(connection.scope)
    state[PRINCIPAL] = who
    route = sorted(handler.paths)[0] if handler.paths else ""
    method = str(connection.scope.get("method", "GET"))
    if route == "/businesses":
        if not who.operator:
            raise NotFoundException(detail="Not Found")
        return
    wanted = connection.query_params.get("business") or connection.headers.get("x-business") or None
    if not who.operator and wanted and wanted != who.business:
        raise NotFoundException(detail="Not Found")  # another business: as if it did not exist, whatever the role
    if who.role == "staff" and not staff_may(method, route):
        raise PermissionDeniedException(detail="staff may read conversations, bookings and analytics only; "
                                               "ask an owner of the business")
    if who.operator and not wanted and len(registry.ids()) != 1:
        if route == "/audit":
            state[BUSINESS_RUNTIME] = OperatorView(registry.operator_store)
            return
        if route == "/conversations" and method == "GET":  # every business's, newest first
            state[BUSINESS_RUNTIME] = AllBusinesses(registry)
            return
        if route == "/conversations/{conv_id:str}":  # the id names the business's number
            parsed = parse_conversation_id(str(connection.path_params.get("conv_id", "")))
            owner = registry.for_session(parsed[0]) if parsed else None
            if owner is None:
                raise NotFoundException(detail="no such conversation (ids come from GET /api/conversations)")
            wanted = owner.id
    business = reach(who, registry, wanted)
    if business is None or business.runtime is None:
        if who.operator and not wanted:
            raise BadQuery(detail=f"name the business: add ?business=<id> (one of {', '.join(registry.ids())}; "
                                  "GET /api/businesses lists them)")
        raise NotFoundException(detail=f"no business {str(wanted)[:64]!r}" if who.operator else "Not Found")
    state[BUSINESS_RUNTIME] = business.runtime
    state[BUSINESS_SETTINGS] = business.settings
    state[BUSINESS_ID] = business.id


def audit_place(scope: Any, registry: Any, who: Principal) -> tuple[Any, str]:
    """(store, business) an admin request's audit entry goes to: the business acted on; else the
    admin's own business; else (the operator, no business) the operator's log."""
    state = state_of(scope)
    business_id = state.get(BUSINESS_ID) or who.business
    business = registry.get(business_id) if business_id else None
    if business is not None and business.runtime is not None:
        return business.runtime.store, business.id
    return registry.operator_store, OPERATOR_LEVEL


@get("/businesses", summary="Every business of this deployment (the operator's token only)")
async def list_businesses(request: Request[Any, Any, Any]) -> BusinessesReport:
    registry = request.app.state.businesses
    if registry is None:
        raise NotFoundException(detail="this deployment serves one business (ORCHESTRATOR_BUSINESSES_DIR is unset)")
    out = []
    for business_id in registry.ids():
        b = registry.get(business_id)
        flows = b.runtime.catalog.flow_ids() if b.runtime is not None else []
        out.append(BusinessSummary(
            id=b.id, name=b.name, timezone=b.config.timezone, numbers=b.config.all_numbers(),
            channels=b.channels.names(), flows=flows, default_flow=b.config.default_flow,
            admins=[AdminSummary(name=a.name, role=a.role) for a in b.config.admins],
            retention_days=b.settings.retention_days, conversations_per_day=b.config.limits.conversations_per_day,
        ))
    return BusinessesReport(businesses=out, refused={k.rsplit("/", 1)[-1]: v for k, v in registry.refused.items()})
