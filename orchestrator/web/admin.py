"""The admin API (docs/SPEC.md §5): flows, conversations, contacts; bearer-token protected.

    router = admin_router(settings)        # create_app mounts it by default
    # Authorization: Bearer <ORCHESTRATOR_ADMIN_TOKEN>, compared with hmac.compare_digest

Every request reaching the router is written to the audit log (who = the token's
fingerprint, what = method + route, target = flow / conversation / hashed contact, status).
Bad input answers 4xx (400 malformed, 404 unknown, 409 opted out, 422 invalid flow), never 5xx;
a store outage answers 503 through the server's last-resort handler.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    ClientException,
    NotAuthorizedException,
    NotFoundException,
    ServiceUnavailableException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import metrics
from orchestrator.errors import ConnectorError, FlowError, NoShowRefused, OptedOut
from orchestrator.errors import Diagnostic as FlowDiagnostic
from orchestrator.flow import graph
from orchestrator.flow.loader import load_flow_text
from orchestrator.logs import redact_phone
from orchestrator.model import TranscriptEntry
from orchestrator.plugins.channels import Address
from orchestrator.plugins.connectors import ErasureContext
from orchestrator.records.analytics import ConversationRecord, FlowAnalytics, conversation_id, parse_conversation_id
from orchestrator.records.audit import AuditEntry, AuditLog, RefusalLimiter, audit_key, contact_ref, fingerprint
from orchestrator.runtime.catalog import NoRoute
from orchestrator.runtime.outbox import FailedSend
from orchestrator.settings import AppSettings
from orchestrator.web.admin_models import (
    ConnectorFailure,
    ContactData,
    ConversationDetail,
    Diagnostic,
    Erasure,
    FlowDetail,
    FlowRevision,
    FlowSummary,
    Lead,
    LeadStatus,
    NoShow,
    Problem,
    StartedConversation,
    TranscriptLine,
    ValidationReport,
)
from orchestrator.web.business_admin import list_businesses

log = logging.getLogger("orchestrator.web.admin")
FLOW_ID = re.compile(r"^[a-z0-9_]{1,64}$")
PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_LIKE = re.compile(r"^[+\d\s().\-]+$")
CONTACT_ID = re.compile(r"^[A-Za-z0-9][\w.:@+\-]{0,199}$", re.ASCII)
BOOKING_ID = re.compile(r"^[A-Za-z0-9][\w.@\-]{0,255}$", re.ASCII)  # embedded: uuid hex; Google: event ids
MAX_LIMIT = 500
ROLLBACK_MARK = "# rolled back to revision "


# ---- input checks ----------------------------------------------------------------------------


def normalize_phone(raw: str) -> str:
    """'+1 (555) 555-0123' -> '+15555550123'; 400 naming the value when it is not a phone number."""
    text = re.sub(r"[\s().\-]", "", raw or "")
    if text.startswith("00"):
        text = "+" + text[2:]
    if text and not text.startswith("+"):
        text = "+" + text
    if not PHONE.match(text):
        raise ValidationException(
            detail=f"contact {redact_phone(raw)!r} is not a phone number; write it in E.164, e.g. +15555550123"
        )
    return text


def contact_id(raw: str) -> str:
    """A contact as any channel keys it: a phone number (normalised to E.164, as `normalize_phone`),
    or the channel's own id kept as it is: a WhatsApp business-scoped user id (`US.1349...`, for
    contacts known only by username), a Twilio Voice client (`client:alice`), a web-chat visitor.
    400 naming the forms when it is neither."""
    text = (raw or "").strip()
    if _PHONE_LIKE.match(text):
        return normalize_phone(text)
    if not CONTACT_ID.match(text):
        raise ValidationException(
            detail=f"contact {redact_phone(text[:40])!r} is neither a phone number (E.164, e.g. +15555550123) nor "
                   "a channel's contact id (e.g. a WhatsApp user id US.13491208655302741918): letters, digits "
                   "and . _ : @ + - only, up to 200"
        )
    return text


def check_flow_id(flow_id: str) -> str:
    if not FLOW_ID.match(flow_id):
        raise ValidationException(detail=f"flow id {flow_id[:80]!r} is malformed; ids are [a-z0-9_]+")
    return flow_id


def parse_when(name: str, raw: str | None) -> float | None:
    """An epoch number or an ISO-8601 date-time (with offset; naive = UTC)."""
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationException(
            detail=f"{name}={raw[:40]!r} is not a time; give epoch seconds or ISO 8601 (2026-11-25T12:00:00-05:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def bounded(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValidationException(detail=f"{name}={value} is out of range; use {low}..{high}")
    return value


# ---- auth and audit --------------------------------------------------------------------------


def token_ok(header: str | None, expected: str | None) -> bool:
    if not expected or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _guard(settings: AppSettings) -> Any:
    def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        registry = connection.app.state.get("businesses")
        if registry is not None:  # many businesses: per-business admins and roles
            from orchestrator.web.business_admin import authorize

            authorize(connection, handler, registry, settings)
            return
        if not settings.admin_token:
            raise NotAuthorizedException(detail="the admin API is off: set ORCHESTRATOR_ADMIN_TOKEN to enable it")
        if not token_ok(connection.headers.get("authorization"), settings.admin_token):
            raise NotAuthorizedException(detail="missing or wrong bearer token (Authorization: Bearer <token>)")

    return admin_guard


def audit_target(path_params: dict[str, Any], key: bytes) -> str:
    if "phone" in path_params:
        raw = str(path_params["phone"])
        try:
            raw = contact_id(raw)  # one reference per contact, however the number was written
        except ValidationException:
            pass
        return contact_ref(raw, key)
    if "conv_id" in path_params:
        parsed = parse_conversation_id(str(path_params["conv_id"]))
        contact = parsed[0].rpartition(":")[2] if parsed else ""
        return f"conversation:{contact_ref(contact, key)}~{parsed[1] if parsed else '?'}"
    if "flow_id" in path_params:
        return f"flow:{str(path_params['flow_id'])[:64]}"
    if "booking_id" in path_params:
        return f"booking:{str(path_params['booking_id'])[:64]}"
    return ""


class AuditMiddleware(ASGIMiddleware):
    """Writes one audit entry per authorised admin request, after the response status is known.
    A refused request (no or a wrong token) is only counted in its minute (bounded space), and a
    client refused more than `RefusalLimiter` allows is answered 429 before anything runs."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.key = audit_key(settings)
        self.limiter = RefusalLimiter()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"authorization"),
                      None)
        registry = scope["app"].state.get("businesses")
        who = None
        if registry is not None:
            from orchestrator.businesses.access import principal
            from orchestrator.web.business_admin import bearer

            who = principal(bearer(header), registry, self.settings.admin_token)
            authorised = who is not None
        else:
            authorised = token_ok(header, self.settings.admin_token)
        if not authorised:
            client = str((scope.get("client") or ("unknown",))[0])
            if not self.limiter.allow(client):
                metrics.labelled(metrics.ADMIN_REFUSED, "429").inc()
                await _too_many(send, self.limiter.retry_after(client))
                return
        status = {"code": 0}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await next_app(scope, receive, capture)
        finally:
            if authorised and header and who is not None:
                await self._write_business(scope, registry, who, fingerprint(header.partition(" ")[2].strip()),
                                           status["code"] or 500)
            elif authorised and header:
                await self._write(scope, fingerprint(header.partition(" ")[2].strip()), status["code"] or 500)
            elif registry is not None:
                pass  # many businesses: a refused request names no business; the limiter above still counts it
            else:
                metrics.labelled(metrics.ADMIN_REFUSED, str(status["code"] or 500)).inc()
                await self._refused(scope)

    def _log(self, scope: Scope) -> AuditLog | None:
        runtime = scope["app"].state.get("runtime")
        return None if runtime is None else AuditLog(runtime.store, self.settings.retention_seconds)

    async def _write(self, scope: Scope, who: str, status: int) -> None:
        route = getattr(scope.get("route_handler"), "paths", None)
        action = f"{scope.get('method', '?')} {'/api' + sorted(route)[0] if route else scope.get('path', '?')}"
        audit = self._log(scope)
        if audit is None:
            return
        try:
            await audit.write(who=who, action=action, target=audit_target(dict(scope.get("path_params") or {}),
                                                                          self.key), status=status)
        except Exception as exc:
            log.error("audit entry not written for %s: %s", action, exc)

    async def _write_business(self, scope: Scope, registry: Any, who: Any, fp: str, status: int) -> None:
        from orchestrator.web.business_admin import audit_place

        route = getattr(scope.get("route_handler"), "paths", None)
        action = f"{scope.get('method', '?')} {'/api' + sorted(route)[0] if route else scope.get('path', '?')}"
        try:
            store, business = audit_place(scope, registry, who)
            retention = registry.settings.retention_seconds
            if business in registry.businesses:
                retention = registry.get(business).settings.retention_seconds
            await AuditLog(store, retention).write(
                who=fp, action=action, target=audit_target(dict(scope.get("path_params") or {}), self.key),
                status=status, business=business, admin=who.name)
        except Exception as exc:
            log.error("audit entry not written for %s: %s", action, exc)

    async def _refused(self, scope: Scope) -> None:
        audit = self._log(scope)
        if audit is None:
            return
        try:
            await audit.refused()
        except Exception as exc:
            log.error("refused admin request not counted: %s", exc)


async def _too_many(send: Send, retry_after: int) -> None:
    body = msgspec.json.encode({"status_code": 429, "detail": "too many refused requests from this address; "
                                f"send a valid Authorization: Bearer token, or retry after {retry_after} s"})
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# ---- helpers ---------------------------------------------------------------------------------


@dataclass
class YamlBody(Operation):
    """OpenAPI: these routes take the flow's YAML source as the raw request body."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/yaml": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))}, required=True,
            description="the flow's YAML source",
        )


async def _yaml_text(request: Request[Any, Any, Any]) -> str:
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationException(detail="the body is not UTF-8 text; send the flow's YAML source") from None


async def _compiled(runtime: Any, flow_id: str) -> Any:
    check_flow_id(flow_id)
    try:
        return await runtime.catalog.latest(flow_id)
    except NoRoute:
        raise NotFoundException(detail=f"flow {flow_id!r} is not loaded; GET /api/flows lists them") from None


def _diagnostics(exc: FlowError) -> list[Diagnostic]:
    return [Diagnostic(file=d.file, line=d.line, col=d.col, message=d.message, hint=d.hint, path=d.path,
                       text=d.format(), severity=d.severity) for d in exc.diagnostics]


def _report(diagnostics: list[Diagnostic]) -> ValidationReport:
    valid = not any(d.severity == "error" for d in diagnostics)
    return ValidationReport(valid=valid, errors=[d.text for d in diagnostics], diagnostics=diagnostics)


def _check_source(runtime: Any, flow_id: str, text: str) -> list[Diagnostic]:
    """The CLI's validation (`orchestrator validate`) of an uploaded source; [] when valid."""
    found = source_problems(runtime, flow_id, text)
    return _diagnostics(FlowError(found)) if found else []


def source_problems(runtime: Any, flow_id: str, text: str) -> list[FlowDiagnostic]:
    """`_check_source`'s findings as the loader and validator give them (with their severity);
    blocking: run it off the event loop."""
    from orchestrator.flow import validate

    try:
        loaded = load_flow_text(text, f"{flow_id}.yaml")
        found = validate.validate(loaded, runtime.connectors)
        if loaded.flow.flow != flow_id:
            found = [loaded.diagnostic(
                "$.flow", f"the file says flow {loaded.flow.flow!r} but it was sent as {flow_id!r}",
                hint=f"write 'flow: {flow_id}'",
            ), *found]
    except FlowError as exc:
        return list(exc.diagnostics)
    return found


def _entry(e: TranscriptEntry) -> TranscriptLine:
    return TranscriptLine(at=e.at, dir=e.dir, text=e.text, data=e.data)


def _recorder(runtime: Any) -> Any:
    return runtime.recorder


class StartConversation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    contact: str
    flow: str
    channel: str = "sms"  # an adapter name (twilio_sms) or an idiom (sms, whatsapp)
    business: str | None = None  # the number / WhatsApp phone-number id to send from
    vars: dict[str, Any] = {}


# ---- routes ----------------------------------------------------------------------------------


NOT_FOUND = {404: ResponseSpec(Problem, description="no such flow / conversation", generate_examples=False)}


@get("/flows", summary="List flows with their revisions")
async def list_flows(runtime: Any) -> list[FlowSummary]:
    out = []
    for flow_id in runtime.catalog.flow_ids():
        compiled = await runtime.catalog.latest(flow_id)
        out.append(FlowSummary(id=flow_id, title=compiled.title, revision=compiled.revision,
                               revisions=await runtime.store.list_revisions(flow_id)))
    return out


@get("/flows/{flow_id:str}", summary="One flow: source, revision, diagram", responses=NOT_FOUND)
async def get_flow(runtime: Any, flow_id: str) -> FlowDetail:
    compiled = await _compiled(runtime, flow_id)
    return FlowDetail(
        id=flow_id, title=compiled.title, revision=compiled.revision,
        revisions=await runtime.store.list_revisions(flow_id),
        source=await runtime.store.get_revision(compiled.revision),
        diagram=await runtime.catalog.off_loop(graph.to_mermaid, compiled.flow),
    )


@post("/flows/{flow_id:str}/validate", operation_class=YamlBody, status_code=200,
      summary="Check a flow source (the CLI's messages)")
async def validate_flow(runtime: Any, flow_id: str, request: Request[Any, Any, Any]) -> ValidationReport:
    return await check_flow(runtime, flow_id, await _yaml_text(request))


async def check_flow(runtime: Any, flow_id: str, text: str) -> ValidationReport:
    """The validate route's report on a source (the CLI's checks), off the event loop."""
    check_flow_id(flow_id)
    return _report(await runtime.catalog.off_loop(_check_source, runtime, flow_id, text))


@put("/flows/{flow_id:str}", operation_class=YamlBody, summary="Upload a new revision", responses={
    422: ResponseSpec(ValidationReport, description="the flow is invalid; nothing was stored",
                      generate_examples=False)})
async def put_flow(
    runtime: Any, flow_id: str, request: Request[Any, Any, Any]
) -> Response[FlowRevision | ValidationReport]:
    check_flow_id(flow_id)
    saved, errors = await publish_flow(runtime, flow_id, await _yaml_text(request))
    if saved is None:
        return Response(_report(errors), status_code=422)
    return Response(saved, status_code=200)


async def publish_flow(runtime: Any, flow_id: str, text: str) -> tuple[FlowRevision | None, list[Diagnostic]]:
    """Check `text` as the validate route does, then serve it as the flow's newest revision:
    (the revision, []) or (None, the problems; nothing stored). PUT /api/flows and the console."""
    found = await runtime.catalog.off_loop(_check_source, runtime, flow_id, text)
    if any(d.severity == "error" for d in found):
        return None, found
    try:
        compiled = await runtime.catalog.put_source(flow_id, text)
    except FlowError as exc:
        return None, _diagnostics(exc)
    return FlowRevision(id=flow_id, revision=compiled.revision, title=compiled.title, warnings=found), []


async def rollback_flow(runtime: Any, flow_id: str, revision: str) -> tuple[FlowRevision | None, list[Diagnostic]]:
    """Serve an earlier revision's source again, as a new revision. The store lists a revision at
    the time it was first published (a re-published source keeps its old place, and every process
    would go on serving the newer one), so the source gets a comment line naming the rollback,
    which makes it a new, newest revision. NotFoundException when `revision` is not the flow's or
    its source expired."""
    check_flow_id(flow_id)
    if revision not in await runtime.store.list_revisions(flow_id):
        raise NotFoundException(detail=f"revision {revision[:40]!r} is not one of flow {flow_id!r}'s; "
                                       "GET /api/flows lists them")
    source = await runtime.store.get_revision(revision)
    if source is None:
        raise NotFoundException(detail=f"the source of revision {revision!r} expired from the store; "
                                       "upload the file instead")
    current = await _compiled(runtime, flow_id)
    serving = current.revision
    if serving == revision:
        return FlowRevision(id=flow_id, revision=revision, title=current.title), []
    when = datetime.fromtimestamp(runtime.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = source.rstrip("\n").splitlines()
    while body and body[-1].startswith(ROLLBACK_MARK):
        body.pop()  # one marker, not one per rollback
    marker = f"{ROLLBACK_MARK}{revision} (from {serving}) at {when}"
    return await publish_flow(runtime, flow_id, "\n".join([*body, marker]) + "\n")


_DIAGRAMS = {"mermaid": (graph.to_mermaid, "text/plain"), "dot": (graph.to_dot, "text/vnd.graphviz"),
             "html": (graph.to_html, "text/html")}


@get("/flows/{flow_id:str}/diagram", summary="Draw a flow: mermaid, dot or html", responses=NOT_FOUND)
async def flow_diagram(runtime: Any, flow_id: str, format: str = "mermaid") -> Response[str]:
    compiled = await _compiled(runtime, flow_id)
    draw, media = _DIAGRAMS.get(format, (None, ""))
    if draw is not None:
        return Response(await runtime.catalog.off_loop(draw, compiled.flow), media_type=media)
    raise ValidationException(detail=f"format={format[:20]!r}: use mermaid, dot or html")


@get("/flows/{flow_id:str}/analytics", summary="Started, outcomes, funnel, drop-off, channels",
     responses=NOT_FOUND)
async def flow_analytics(
    runtime: Any, flow_id: str, since: str | None = None, until: str | None = None,
) -> FlowAnalytics:
    compiled = await _compiled(runtime, flow_id)
    report: FlowAnalytics = await _recorder(runtime).analytics(
        compiled, since=parse_when("since", since), until=parse_when("until", until))
    return report


@get("/conversations", summary="List conversations (newest first), running ones as they stand now")
async def list_conversations(
    runtime: Any, flow: str | None = None, channel: str | None = None, outcome: str | None = None,
    contact: str | None = None, since: str | None = None, until: str | None = None,
    limit: int = 100, offset: int = 0,
) -> list[ConversationRecord]:
    rows: list[ConversationRecord] = await _recorder(runtime).list_records(
        flow=check_flow_id(flow) if flow else None, channel=channel, outcome=outcome,
        contact=contact_id(contact) if contact else None,
        since=parse_when("since", since), until=parse_when("until", until),
        limit=bounded("limit", limit, 1, MAX_LIMIT), offset=bounded("offset", offset, 0, 1_000_000),
    )
    return rows


def _language_of(live: Any, entries: list[Any]) -> str | None:
    """The contact's language: the live session's, else the last choice recorded (`sys.language`)."""
    if live is not None and live.language:
        return str(live.language)
    chosen = [e.data for e in entries if e.dir == "var" and e.text == "sys.language"]
    return str(chosen[-1]) if chosen else None


@get("/conversations/{conv_id:str}", summary="One conversation: transcript, states, variables, calls",
     responses=NOT_FOUND)
async def get_conversation(runtime: Any, conv_id: str) -> ConversationDetail:
    recorder = _recorder(runtime)
    record = await recorder.get(conv_id)
    if record is None:
        raise NotFoundException(detail="no such conversation (ids come from GET /api/conversations)")
    record = (await recorder.current([record]))[0]
    entries = await recorder.transcript(record)
    live = await recorder.live_session(record)
    variables: dict[str, Any] = dict(live.vars) if live is not None else {}
    if live is None:
        for e in entries:
            if e.dir == "var":
                variables[e.text] = e.data
    lines = [_entry(e) for e in entries]
    return ConversationDetail(
        conversation=record,
        transcript=lines,
        turns=[line for line in lines if line.dir in ("in", "out")],
        states=[e.text for e in entries if e.dir == "state"],
        variables=variables,
        connector_calls=[{"at": e.at, "action": e.text, **(e.data or {})} for e in entries if e.dir == "call"],
        summary=record.summary,
        live_state=live.state if live is not None else None,
        language=_language_of(live, entries),
    )


def _adapter_name(runtime: Any, channel: str) -> str:
    names = runtime.channels.names()
    if channel in names:
        return channel
    for name in names:
        if runtime.channels.get(name).capabilities.idiom == channel:
            return str(name)
    raise ValidationException(
        detail=f"channel {channel[:40]!r} is not configured; configured: {', '.join(names) or 'none'}"
    )


@post("/conversations", summary="Start a flow for a contact (outbound); 409 if opted out, 422 on a channel that "
      "cannot start one", status_code=201,
      responses={**NOT_FOUND, 409: ResponseSpec(Problem, description="the contact opted out; nothing was sent",
                                                generate_examples=False)})
async def start_conversation(runtime: Any, settings: AppSettings, data: StartConversation) -> StartedConversation:
    contact = normalize_phone(data.contact)
    check_flow_id(data.flow)
    adapter = _adapter_name(runtime, data.channel)
    capabilities = runtime.channels.get(adapter).capabilities
    if not capabilities.outbound:
        able = [n for n in runtime.channels.names() if runtime.channels.get(n).capabilities.outbound]
        raise ClientException(
            status_code=422,
            detail=f"channel {data.channel[:40]!r} cannot start a conversation (it takes only conversations the "
                   f"contact starts); channels that can: {', '.join(able) or 'none configured'}"
        )
    idiom = capabilities.idiom
    business = data.business or (settings.whatsapp_phone_number_id if idiom == "whatsapp"
                                 else settings.twilio_from_number)
    if not business:
        raise ValidationException(
            detail="no business number to send from: give 'business' or set TWILIO_FROM_NUMBER / "
                   "WHATSAPP_PHONE_NUMBER_ID"
        )
    try:
        reply = await runtime.start_outbound(Address(business=business, contact=contact), adapter, data.flow,
                                             dict(data.vars))
    except OptedOut:
        raise ClientException(status_code=409, detail="the contact opted out (STOP); nothing was sent") from None
    except NoRoute:
        raise NotFoundException(detail=f"flow {data.flow!r} is not loaded; GET /api/flows lists them") from None
    record = None
    raw = await runtime.store.load(reply.session_id) if reply.session_id else None
    if raw is not None:
        from orchestrator.model import Session

        session = msgspec.msgpack.decode(raw, type=Session)
        record = conversation_id(session.id, session.started_at)
    return StartedConversation(conversation_id=record, session_id=reply.session_id, channel=adapter)


def _erasable(runtime: Any, hook: str) -> list[tuple[str, Any]]:
    """(name, connector) of every registered connector with the optional `hook` (a method)."""
    out = []
    for name in runtime.connectors.names():
        connector = runtime.connectors.get(name)
        if callable(getattr(connector, hook, None)):
            out.append((name, connector))
    return out


_RECORDING_SID = re.compile(r"/Recordings/(RE[0-9a-fA-F]{32})")


async def recording_sids(runtime: Any, contact: str) -> list[str]:
    """The provider recordings (Twilio RE... sids) named anywhere in the contact's sessions,
    transcripts and conversation records: the call recordings and voicemails to delete with them."""
    exported = await runtime.store.export_contact(contact)
    texts = [repr(msgspec.msgpack.decode(raw)) for raw in exported.sessions.values()]
    texts += [repr(msgspec.msgpack.decode(e)) for entries in exported.transcripts.values() for e in entries]
    records = await _recorder(runtime).list_records(contact=contact, limit=MAX_LIMIT)
    texts += [repr(r.summary) for r in records if r.summary]
    return sorted({sid for text in texts for sid in _RECORDING_SID.findall(text)})


def _channel_hooks(runtime: Any, hook: str) -> list[tuple[str, Any]]:
    """(name, adapter) of every channel adapter with the optional `hook` (a method)."""
    out = []
    for name in runtime.channels.names():
        adapter = runtime.channels.get(name)
        if callable(getattr(adapter, hook, None)):
            out.append((name, adapter))
    return out


def _erasure_context(runtime: Any, settings: AppSettings) -> ErasureContext:
    numbers = [n for n in (settings.twilio_from_number, settings.whatsapp_phone_number_id) if n]
    return ErasureContext(now=runtime.clock(), businesses=numbers)


async def export_connectors(runtime: Any, settings: AppSettings, contact: str) -> dict[str, Any]:
    held: dict[str, Any] = {}
    ctx = _erasure_context(runtime, settings)
    for name, connector in _erasable(runtime, "export_contact"):
        try:
            held[name] = await connector.export_contact(contact, ctx)
        except Exception as exc:
            log.warning("contact export: connector %s failed: %s", name, type(exc).__name__)
            held[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return held


@get("/contacts/{phone:str}", summary="Everything held about a contact (access request), the connectors' too")
async def export_contact(runtime: Any, settings: AppSettings, phone: str) -> ContactData:
    contact = contact_id(phone)
    exported = await runtime.store.export_contact(contact)
    records = await _recorder(runtime).list_records(contact=contact, limit=MAX_LIMIT)
    bookings = [r.summary["booking"] for r in records if r.summary and r.summary.get("booking")]
    return ContactData(
        contact=contact, opted_out=exported.opted_out,
        sessions={sid: msgspec.msgpack.decode(raw) for sid, raw in exported.sessions.items()},
        transcripts={sid: [_entry(msgspec.msgpack.decode(e, type=TranscriptEntry)) for e in entries]
                     for sid, entries in exported.transcripts.items()},
        conversations=records,
        bookings=bookings,
        connectors=await export_connectors(runtime, settings, contact),
    )


async def erase_statuses(store: Any, contact: str) -> int:
    """Delivery statuses are keyed by outbox id (`<business>:<contact>|<uniq>`), which names the
    contact: the session store's erase_contact leaves them, so the erasure removes them here
    (until the store's erase_contact does it: /work/notes/store_api_request.md §2; then this goes)."""
    client = getattr(store, "client", None) or getattr(store, "_r", None)
    if client is not None:
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in contact)
        keys = [k async for k in client.scan_iter(match=f"{store.prefix}:st:*:{escaped}|*", count=1000)]
        return int(await client.delete(*keys)) if keys else 0
    table: Any = getattr(store, "_statuses", None)
    removed = 0
    for key in table.live_keys() if table is not None else []:
        if key.rpartition("|")[0].endswith(":" + contact):
            removed += table.pop(key) is not None
    return removed


@delete("/contacts/{phone:str}", status_code=200, summary="Erase a contact (deletion request); keeps the opt-out",
        responses={502: ResponseSpec(Erasure, description="a connector failed: the erasure is incomplete; run it "
                                                          "again", generate_examples=False)})
async def erase_contact(runtime: Any, settings: AppSettings, phone: str) -> Response[Erasure]:
    """The store, the records, then every connector with an `erase_contact` hook (the calendar's
    bookings keep their slot but lose the name and phone; CRM records go). Every connector is
    tried even when one fails; a failure makes the answer 502 and `complete: false`. `phone` is any
    id a channel keys a contact by (`contact_id`): a number, or a WhatsApp user id."""
    contact = contact_id(phone)
    recordings = await recording_sids(runtime, contact)  # found before their links are erased
    removed = await _recorder(runtime).erase_contact(contact)
    removed += await runtime.store.erase_contact(contact)
    removed += await erase_statuses(runtime.store, contact)
    changed: dict[str, int] = {}
    failed: list[ConnectorFailure] = []
    ctx = _erasure_context(runtime, settings)
    for name, connector in _erasable(runtime, "erase_contact"):
        try:
            changed[name] = int(await connector.erase_contact(contact, ctx))
        except Exception as exc:
            log.error("erasure of %s: connector %s failed: %s", contact_ref(contact, audit_key(settings)), name,
                      type(exc).__name__)
            failed.append(ConnectorFailure(
                connector=name, error=f"{type(exc).__name__}: {exc}"[:300],
                retry=f"the contact may still be in {name}: fix its access, then run DELETE /api/contacts/{{phone}} "
                      "again (erasure is safe to repeat)",
            ))
    for name, adapter in _channel_hooks(runtime, "delete_recordings") if recordings else []:
        try:  # the calls and voicemails the provider keeps (Twilio's recordings)
            changed[f"{name}.recordings"] = int(await adapter.delete_recordings(recordings))
        except Exception as exc:
            log.error("erasure of %s: %s recordings not deleted: %s", contact_ref(contact, audit_key(settings)),
                      name, type(exc).__name__)
            failed.append(ConnectorFailure(
                connector=name, error=f"{type(exc).__name__}: {exc}"[:300],
                retry="the recordings may still be at the provider: run DELETE /api/contacts/{phone} again "
                      "(erasure is safe to repeat) or delete them in its console",
            ))
    erasure = Erasure(contact=contact, removed=removed, opted_out=await runtime.store.is_opted_out(contact),
                      connectors=changed, failed=failed, complete=not failed)
    return Response(erasure, status_code=502 if failed else 200)


@get("/leads", summary="Leads the embedded CRM keeps (newest first), optionally of one status", responses=NOT_FOUND)
async def list_leads(runtime: Any, status: LeadStatus | None = None, limit: int = 100, offset: int = 0,
                     ) -> list[Lead]:
    """What `crm.create_lead` stored, with each lead's notes. A 404 when `crm` is an external CRM
    (CRM_URL or HUBSPOT_TOKEN set): the leads are there."""
    keeper = next((c for _, c in _erasable(runtime, "list_leads")), None)
    if keeper is None:
        raise NotFoundException(detail="no embedded CRM here: the `crm` connector is an external CRM (CRM_URL or "
                                       "HUBSPOT_TOKEN is set), which keeps the leads; look them up there")
    try:
        rows = await keeper.list_leads(status=status, limit=bounded("limit", limit, 1, MAX_LIMIT),
                                       offset=bounded("offset", offset, 0, 1_000_000))
    except ConnectorError as exc:
        raise ServiceUnavailableException(detail=f"{exc}; check the file ORCHESTRATOR_CRM_DB names") from None
    return msgspec.convert(rows, list[Lead])


async def mark_no_show(runtime: Any, booking_id: str) -> NoShow:
    """Mark a booking of the business's calendar a no-show (the API route and the console's
    button): the calendar's `mark_no_show` hook, then the mark on the conversations about it, so
    `GET /api/flows/{id}/analytics` counts it. 404 unknown, 409 refused, 503 calendar down."""
    if not BOOKING_ID.match(booking_id):
        raise ValidationException(detail=f"booking id {booking_id[:40]!r} is malformed; ids come from the calendar "
                                         "(GET /console/bookings lists them)")
    calendar = runtime.connectors.get("calendar") if "calendar" in runtime.connectors.names() else None
    hook = getattr(calendar, "mark_no_show", None)
    if not callable(hook):
        raise NotFoundException(detail="no calendar here can mark a no-show: configure the embedded calendar or "
                                       "Google Calendar as `calendar`")
    try:
        booking = await hook(booking_id, now=runtime.clock())
    except NotImplementedError:
        raise NotFoundException(detail="this calendar cannot mark a no-show; mark it in the calendar itself") from None
    except NoShowRefused as exc:
        raise ClientException(status_code=409, detail=str(exc)) from None
    except ConnectorError as exc:
        raise ServiceUnavailableException(detail=f"{exc}; the booking was not marked: try again") from None
    if booking is None:
        raise NotFoundException(detail=f"no booking {booking_id!r} in this business's calendar "
                                       "(GET /console/bookings lists them)")
    conversations: list[str] = []
    session_id = str(booking.get("session_id") or "")
    if session_id:  # made in a conversation: count it on the conversations about it
        start = datetime.fromisoformat(str(booking["start"])).timestamp()
        conversations = await _recorder(runtime).mark_no_show(session_id, booking_id, before=start)
    log.info("booking %s marked a no-show (%d conversations)", booking_id, len(conversations))
    return NoShow(booking=booking, conversations=conversations)


@post("/bookings/{booking_id:str}/no-show", status_code=200,
      summary="Mark a booking that has started a no-show (owners); counted in the flows' analytics",
      responses={404: ResponseSpec(Problem, description="no such booking in the business's calendar",
                                   generate_examples=False),
                 409: ResponseSpec(Problem, description="the booking has not started yet, or was cancelled",
                                   generate_examples=False)})
async def booking_no_show(runtime: Any, booking_id: str) -> NoShow:
    """Idempotent: marking a no-show again answers the same. Staff may not (403): owners and the
    operator may."""
    return await mark_no_show(runtime, booking_id)


_failed_decoder = msgspec.msgpack.Decoder(FailedSend)


@get("/outbox/failed", summary="Messages the outbox gave up on (newest first): who, what, why")
async def failed_sends(runtime: Any, limit: int = 100) -> list[FailedSend]:
    """A send refused for good, or still failing ORCHESTRATOR_OUTBOX_GIVE_UP_SECONDS after its turn, or
    free-form WhatsApp text whose 24 h window closed: kept 30 days, the last 1,000."""
    raw = await runtime.store.failed_outbox(bounded("limit", limit, 1, MAX_LIMIT))
    return [_failed_decoder.decode(entry) for entry in raw]


@get("/audit", summary="The admin audit log, newest first")
async def audit_log(runtime: Any, settings: AppSettings, limit: int = 100) -> list[AuditEntry]:
    return await AuditLog(runtime.store, settings.retention_seconds).entries(
        limit=bounded("limit", limit, 1, MAX_LIMIT))


def admin_router(settings: AppSettings) -> Router:
    """A fresh Router for one app (handlers need the `runtime` and `settings` dependencies)."""
    return Router(
        path="/api",
        route_handlers=[list_flows, get_flow, validate_flow, put_flow, flow_diagram, flow_analytics,
                        list_conversations, get_conversation, start_conversation, export_contact, erase_contact,
                        list_leads, booking_no_show, failed_sends, audit_log, list_businesses],
        guards=[_guard(settings)],
        middleware=[AuditMiddleware(settings)],
        tags=["admin"],
        security=[{"BearerToken": []}],
    )
