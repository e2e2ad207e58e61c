"""The console with many businesses (docs/SPEC.md §10, §11): the same authorization as /api. A
business admin signs in with its token and sees only its business (staff: conversations,
bookings and funnels; no editing); the operator signs in with ORCHESTRATOR_ADMIN_TOKEN and picks
a business on `/console/businesses`. The session cookie names the role, the admin and the business."""

from __future__ import annotations

import logging
import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template

from orchestrator.businesses.access import principal, staff_may_console
from orchestrator.records.audit import AuditLog
from orchestrator.settings import AppSettings
from orchestrator.web.app import BUSINESS_RUNTIME, BUSINESS_SETTINGS
from orchestrator.web.business_admin import BUSINESS_ID, OPERATOR_LEVEL, state_of
from orchestrator.web.console import session as sessions

log = logging.getLogger("orchestrator.web.console")
BASE = "/console"


class PickBusiness(HTTPException):
    """The operator has not picked a business: the console's error handler redirects to the picker."""

    status_code = 409
    pick_business = True


def authorize(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler, registry: Any,
              found: sessions.ConsoleSession) -> None:
    route = sorted(handler.paths)[0] if handler.paths else ""
    method = str(connection.scope.get("method", "GET"))
    if found.role not in ("operator", "owner", "staff"):
        raise NotAuthorizedException(detail="sign in again")
    if found.role != "operator":  # the admin must still be in business.yaml (an edit may remove them)
        business = registry.get(found.business)
        if business is None or not any(a.name == found.admin and a.role == found.role
                                       for a in business.config.admins):
            raise NotAuthorizedException(detail="this admin is no longer in business.yaml; sign in again")
    if route == "/logout":
        return
    if route == "/businesses":
        if found.role != "operator":
            raise NotFoundException(detail="Not Found")
        return
    if found.role == "staff" and not staff_may_console(method, route):
        raise PermissionDeniedException(detail="staff may read conversations, bookings and funnels only; ask an "
                                               "owner of the business to change flows")
    business_id = found.business or (registry.ids()[0] if len(registry.ids()) == 1 else "")
    business = registry.get(business_id) if business_id else None
    if business is None or business.runtime is None:
        if found.role == "operator":
            raise PickBusiness(detail="pick a business")
        raise NotAuthorizedException(detail="sign in again")
    state = state_of(connection.scope)
    state[BUSINESS_RUNTIME] = business.runtime
    state[BUSINESS_SETTINGS] = business.settings
    state[BUSINESS_ID] = business.id


async def audit(request: Request[Any, Any, Any], settings: AppSettings, action: str, target: str, status: int,
                found: sessions.ConsoleSession | None, *, role: str = "", admin: str = "",
                business_id: str = "") -> None:
    registry = request.app.state.businesses
    role = role or (found.role if found else "")
    admin = admin or (found.admin if found else "")
    business_id = business_id or (found.business if found else "")
    business = registry.get(business_id) if business_id else None
    store = business.runtime.store if business is not None and business.runtime is not None \
        else registry.operator_store
    retention = (business.settings if business is not None else settings).retention_seconds
    try:
        await AuditLog(store, retention).write(who=f"console:{role}", action=action, target=target, status=status,
                                               business=business.id if business else OPERATOR_LEVEL, admin=admin)
    except Exception as exc:
        log.error("audit entry not written for %s: %s", action, exc)


def _page(name: str, request: Request[Any, Any, Any], settings: AppSettings, status: int = 200,
          **context: Any) -> Template:
    from orchestrator.web.console.routes import _page as page

    return page(name, request, settings, status, **context)


def _cookie(request: Request[Any, Any, Any], settings: AppSettings, value: str) -> Any:
    from orchestrator.web.console.routes import _cookie as cookie

    return cookie(request, settings, value, sessions.SESSION_SECONDS)


async def login(request: Request[Any, Any, Any], settings: AppSettings, token: str, target: str, limiter: Any,
                client: str) -> Response[Any]:
    registry = request.app.state.businesses
    who = principal(token, registry, settings.admin_token)
    if who is None:
        return _page("login.html", request, settings, 401, next=target, off=False,
                     error="that is not an admin token (a business admin's, or the operator's "
                           "ORCHESTRATOR_ADMIN_TOKEN)")
    ids = registry.ids()
    business = who.business or (ids[0] if len(ids) == 1 else "")
    await audit(request, settings, "POST /console/login", "", 303, None, role=who.role, admin=who.name,
                business_id=business)
    value = sessions.issue(settings, time.time(), role=who.role, admin=who.name, business=business)
    response: Response[Any] = Redirect(target if business else f"{BASE}/businesses", status_code=303)
    response.set_cookie(_cookie(request, settings, value))
    return response


@get("/businesses")
async def picker(request: Request[Any, Any, Any], settings: AppSettings) -> Template:
    registry = request.app.state.businesses
    rows = [{"id": b, "name": registry.get(b).name, "numbers": ", ".join(registry.get(b).config.all_numbers())}
            for b in registry.ids()]
    return _page("businesses.html", request, settings, businesses=rows)


@post("/businesses", status_code=303)
async def pick_business(request: Request[Any, Any, Any], settings: AppSettings) -> Response[Any]:
    from orchestrator.web.console.routes import _changing

    form = await _changing(request, settings)
    registry = request.app.state.businesses
    chosen = str(form.get("business") or "")
    if registry.get(chosen) is None:
        raise NotFoundException(detail=f"no business {chosen[:64]!r}; pick one from the list")
    current = sessions.read(settings, request.cookies.get(sessions.COOKIE), time.time())
    assert current is not None  # the guard checked the session
    value = sessions.issue(settings, time.time(), role=current.role, admin=current.admin, business=chosen,
                           csrf=current.csrf)
    response: Response[Any] = Redirect(f"{BASE}/conversations", status_code=303)
    response.set_cookie(_cookie(request, settings, value))
    return response
