"""The admin API's response bodies (docs/SPEC.md §5), typed so the served OpenAPI schema
documents them. Conversation records and audit entries are the stored Structs themselves
(analytics.ConversationRecord, audit.AuditEntry); the analytics report is
analytics.FlowAnalytics."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from orchestrator.records.analytics import ConversationRecord


class FlowSummary(msgspec.Struct, kw_only=True):
    id: str
    title: str
    revision: str  # the live revision
    revisions: list[str]  # every stored revision, oldest first


class FlowDetail(FlowSummary, kw_only=True):
    source: str | None  # the live revision's YAML
    diagram: str  # mermaid


class Diagnostic(msgspec.Struct, kw_only=True):
    file: str
    line: int
    col: int
    message: str
    hint: str | None
    path: str  # the node in the flow, e.g. $.states.menu.on
    text: str  # the CLI's one-line rendering: file:line:col: message (hint)
    severity: str = "error"  # "warning" never refuses a flow


class FlowRevision(msgspec.Struct, kw_only=True):
    """PUT /api/flows/{id}: the revision now live."""

    id: str
    revision: str
    title: str
    # what validate warns about in the saved source: served anyway, as `orchestrator validate`
    # passes a flow with warnings (only `--strict` refuses them)
    warnings: list[Diagnostic] = msgspec.field(default_factory=list)


class ValidationReport(msgspec.Struct, kw_only=True):
    """POST /api/flows/{id}/validate (200), and PUT /api/flows/{id} when invalid (422). `valid`
    is true when nothing is an error (warnings alone do not refuse a flow)."""

    valid: bool
    errors: list[str]
    diagnostics: list[Diagnostic]


class TranscriptLine(msgspec.Struct, kw_only=True, omit_defaults=True):
    at: float
    dir: str  # in | out | state | var | call | note
    text: str
    data: Any = None


class ConversationDetail(msgspec.Struct, kw_only=True):
    conversation: ConversationRecord
    transcript: list[TranscriptLine]
    turns: list[TranscriptLine]  # what was said, in and out
    states: list[str]  # states entered, in order
    variables: dict[str, Any]
    connector_calls: list[dict[str, Any]]  # at, action, outcome, ms, ...
    summary: dict[str, Any] | None
    live_state: str | None  # where the conversation waits now; None once ended or expired
    language: str | None = None  # SPEC §9: the contact's language (a declared one); None: the flow's default


class StartedConversation(msgspec.Struct, kw_only=True):
    conversation_id: str | None
    session_id: str | None
    channel: str  # the adapter it was sent on


class ContactData(msgspec.Struct, kw_only=True):
    """GET /api/contacts/{phone}: everything held about the contact."""

    contact: str
    opted_out: bool
    sessions: dict[str, Any]  # session id -> stored session
    transcripts: dict[str, list[TranscriptLine]]
    conversations: list[ConversationRecord]
    bookings: list[Any]
    connectors: dict[str, Any] = {}  # connector -> the records it holds (those with export_contact), or {"error"}


class ConnectorFailure(msgspec.Struct, kw_only=True):
    connector: str
    error: str
    retry: str  # what to do: run the erasure again once the connector is reachable


class Erasure(msgspec.Struct, kw_only=True):
    """DELETE /api/contacts/{phone}: 200 when complete; 502 (with this body) when a connector failed."""

    contact: str
    removed: int  # stored items removed
    opted_out: bool  # the opt-out record is kept
    connectors: dict[str, int] = {}  # connector -> records it removed or pseudonymised
    failed: list[ConnectorFailure] = []
    complete: bool = True  # False: some connector still holds the contact (see failed)


class NoShow(msgspec.Struct, kw_only=True):
    """POST /api/bookings/{id}/no-show: the booking as the calendar has it now (`status: no_show`,
    `session_id` where a conversation made it), and the conversations the no-show counts on in
    the analytics (the one that booked it, a reminder about it); [] when none is kept any more."""

    booking: dict[str, Any]
    conversations: list[str]


class Problem(msgspec.Struct, kw_only=True):
    """An error answer (litestar's shape)."""

    status_code: int
    detail: str


LeadStatus = Literal["new", "contacted", "won", "lost"]


class LeadNote(msgspec.Struct, kw_only=True):
    id: str
    lead_id: str | None
    text: str
    created_at: str  # ISO, UTC


class Lead(msgspec.Struct, kw_only=True):
    """GET /api/leads: a lead the embedded CRM keeps (`crm.create_lead`)."""

    id: str
    status: LeadStatus
    phone: str | None
    name: str | None
    email: str | None
    reason: str | None
    source: str | None  # default: the flow that created it
    preferred_time: str | None
    address: str | None
    flow: str
    session_id: str | None  # the conversation's session (GET /api/conversations?contact=)
    fields: dict[str, Any]
    created_at: str  # ISO, UTC (the engine's clock)
    updated_at: str
    notes: list[LeadNote]
