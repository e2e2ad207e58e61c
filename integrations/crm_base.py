"""What every CRM backend shares (embedded, HTTP, HubSpot): the lead actions' argument types,
the lead statuses, how a flow's answers become a lead's text, and a conversation's lead
reference. The flow sees the same `crm.create_lead / find_contact / add_note / update_lead`
whichever backend `crm` is (the entry point integrations.embedded_crm.Crm picks it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from orchestrator.plugins.connectors import CallContext, ConnectorResult

LeadStatus = Literal["new", "contacted", "won", "lost"]
LEAD_STATUSES: tuple[str, ...] = ("new", "contacted", "won", "lost")


class CreateLeadArgs(msgspec.Struct, kw_only=True):
    """Text fields take a flow's answers as they are: a mapping (a date-time answer such as
    "as soon as possible", a slot) is kept as its label, a list as its items joined."""

    name: Any = None
    phone: str | None = None  # default: the conversation's contact
    email: Any = None
    reason: Any = None  # what they need
    source: Any = None  # default: the flow's id
    preferred_time: Any = None
    address: Any = None
    notes: str | None = None  # a first note on the lead
    fields: dict[str, Any] = {}  # anything else the flow collected
    key: str = ""  # two leads from one conversation: give each its own key


class FindContactArgs(msgspec.Struct, kw_only=True):
    phone: str | None = None  # default: the conversation's contact


class AddNoteArgs(msgspec.Struct, kw_only=True):
    text: str
    lead_id: str | None = None  # default: this conversation's latest lead (none: the note is on the contact)
    phone: str | None = None


class UpdateLeadArgs(msgspec.Struct, kw_only=True):
    status: str  # new | contacted | won | lost (any case)
    lead_id: str | None = None  # default: this conversation's latest lead
    note: str | None = None


def answer_text(value: Any) -> str | None:
    """An answer as the text a lead keeps; None for nothing ("", None)."""
    if isinstance(value, Mapping):
        value = value.get("label") or value.get("start") or json.dumps(value, default=str)
    elif isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    text = str(value).strip() if value is not None else ""
    return text or None


def lead_status(raw: str) -> LeadStatus | None:
    """`" Won"` -> `"won"`; None for anything but new, contacted, won, lost."""
    status = raw.strip().casefold()
    return status if status in LEAD_STATUSES else None  # type: ignore[return-value]


def bad_status(raw: str) -> ConnectorResult:
    return ConnectorResult(outcome="error", detail=f"crm.update_lead: status {raw[:30]!r} is not one of "
                                                   f"{', '.join(LEAD_STATUSES)}")


def lead_ref(ctx: CallContext, key: str = "") -> str:
    """The reference of this conversation's lead (session id, flow, `key`): how an external
    CRM finds it again, so a retried `create_lead` updates instead of adding one."""
    return hashlib.sha256(json.dumps([ctx.session_id, ctx.flow, key]).encode()).hexdigest()[:32]


LEAD_TEXT_FIELDS = ("name", "email", "reason", "source", "preferred_time", "address")


def lead_text(args: CreateLeadArgs) -> dict[str, str | None]:
    """The lead's text fields as given (None: not given)."""
    return {k: answer_text(getattr(args, k)) for k in LEAD_TEXT_FIELDS}
