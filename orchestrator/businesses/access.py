"""Who is asking, with many businesses (docs/SPEC.md §10): the operator (ORCHESTRATOR_ADMIN_TOKEN,
every business) or one business's admin, `owner` (everything of the business) or `staff` (read
conversations, bookings and analytics).

    who = principal(token, registry, settings.admin_token)   # None: no such token
    staff_may("GET", "/conversations/{conv_id:str}")         # True
    reach(who, registry, "sol_dental")                       # the Business, or None (a 404)

Admin tokens are kept as SHA-256 in business.yaml and compared with hmac.compare_digest, every
admin's hash each time (no early exit that would time which one matched).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

import msgspec

Role = Literal["operator", "owner", "staff"]
# what staff may do under /api and /console: read conversations, bookings (leads) and analytics
STAFF_API = frozenset({
    ("GET", "/flows"), ("GET", "/flows/{flow_id:str}/analytics"), ("GET", "/conversations"),
    ("GET", "/conversations/{conv_id:str}"), ("GET", "/leads"),
})
STAFF_CONSOLE_PREFIXES = ("/conversations", "/bookings", "/flows/{flow_id:str}/funnel")
STAFF_CONSOLE_EXACT = frozenset({"/", "/login", "/logout", "/flows", "/businesses"})


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    business: str = ""  # "" for the operator
    name: str = "operator"

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal(token: str | None, registry: Any, operator_token: str | None) -> Principal | None:
    """The principal a bearer token names, or None."""
    if not token:
        return None
    given = token.strip()
    found: Principal | None = None
    if operator_token and hmac.compare_digest(given.encode(), operator_token.encode()):
        found = Principal(role="operator")
    digest = token_sha256(given).encode()
    for business in registry.businesses.values() if registry is not None else ():
        for admin in business.config.admins:
            if hmac.compare_digest(digest, admin.token_sha256.encode()) and found is None:
                found = Principal(role=admin.role, business=business.id, name=admin.name)
    return found


def staff_may(method: str, route: str) -> bool:
    return (method.upper(), route) in STAFF_API


def staff_may_console(method: str, route: str) -> bool:
    if route in STAFF_CONSOLE_EXACT:
        return True
    return method.upper() == "GET" and route.startswith(STAFF_CONSOLE_PREFIXES)


def reach(who: Principal, registry: Any, wanted: str | None) -> Any:
    """The business `who` works on: a business admin's own (asking for another is None: a 404,
    never a 403 that confirms it exists); the operator's pick (`wanted`), or the only one."""
    if not who.operator:
        if wanted and wanted != who.business:
            return None
        return registry.get(who.business)
    if wanted:
        return registry.get(wanted)
    ids = registry.ids()
    return registry.get(ids[0]) if len(ids) == 1 else None
