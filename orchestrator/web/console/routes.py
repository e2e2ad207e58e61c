"""The console's pages and HTMX fragments (docs/SPEC.md §11). Every handler but sign-in goes
through `console_guard` (a valid session cookie), every change also through the CSRF check;
the data comes from the admin API's own functions (orchestrator/web/admin.py), so a page shows
what `/api` answers."""

from __future__ import annotations

import base64
import difflib
import hashlib
import logging
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, ResponseHeader
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template

from orchestrator.logs import redact_phone
from orchestrator.records.audit import AuditLog, RefusalLimiter, fingerprint
from orchestrator.settings import AppSettings
from orchestrator.web import admin
from orchestrator.web.console import session as sessions

log = logging.getLogger("orchestrator.web.console")
BASE = "/console"
POLL_SECONDS = 2
LIST_LIMIT = 100
CHART_LIMIT = admin.MAX_LIMIT
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'")
HEADERS = [ResponseHeader(name="Content-Security-Policy", value=CSP),
           ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
           ResponseHeader(name="Referrer-Policy", value="no-referrer"),
           ResponseHeader(name="Cache-Control", value="no-store")]


# ---- sessions ----------------------------------------------------------------------------------


def _session(connection: ASGIConnection[Any, Any, Any, Any], settings: AppSettings) -> sessions.ConsoleSession:
    found = sessions.read(settings, connection.cookies.get(sessions.COOKIE), time.time())
    if found is None:
        raise NotAuthorizedException(detail="sign in with the admin token")
    return found


def _guard(settings: AppSettings) -> Any:
    def console_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if not handler.opt.get("public"):
            found = _session(connection, settings)
            registry = connection.app.state.get("businesses")
            if registry is not None:  # many businesses: the signed-in admin's business only
                from orchestrator.web.console.businesses import authorize

                authorize(connection, handler, registry, found)

    return console_guard


async def _changing(request: Request[Any, Any, Any], settings: AppSettings) -> dict[str, Any]:
    """The form of a change (POST), after its CSRF token (header from HTMX, field from a plain form)
    matched the session's; 403 otherwise."""
    current = _session(request, settings)
    form = dict(await request.form())
    given = request.headers.get(sessions.CSRF_HEADER) or str(form.get(sessions.CSRF_FIELD) or "")
    if not sessions.csrf_ok(current, given):
        raise HTTPException(status_code=403, detail="this form is out of date (its CSRF token does not match your "
                                                    "session): reload the page and try again")
    return form


def _secure(request: Request[Any, Any, Any], settings: AppSettings) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",", 1)[0].strip()
    return (request.url.scheme == "https" or (settings.public_url or "").startswith("https://")
            or (settings.trust_proxy_headers and forwarded == "https"))


def _cookie(request: Request[Any, Any, Any], settings: AppSettings, value: str, max_age: int) -> Cookie:
    return Cookie(key=sessions.COOKIE, value=value, path=BASE, max_age=max_age, httponly=True,
                  samesite="strict", secure=_secure(request, settings))


async def _audit(runtime: Any, settings: AppSettings, action: str, target: str, status: int,
                 request: Request[Any, Any, Any] | None = None) -> None:
    found = sessions.read(settings, request.cookies.get(sessions.COOKIE), time.time()) if request else None
    if request is not None and request.app.state.get("businesses") is not None:
        from orchestrator.web.console.businesses import audit

        await audit(request, settings, action, target, status, found)
        return
    if runtime is None or not settings.admin_token:
        return
    try:
        await AuditLog(runtime.store, settings.retention_seconds).write(
            who=fingerprint(settings.admin_token), action=action, target=target, status=status)
    except Exception as exc:
        log.error("audit entry not written for %s: %s", action, exc)


def _page(name: str, request: Request[Any, Any, Any], settings: AppSettings, status: int = 200,
          **context: Any) -> Template:
    found = sessions.read(settings, request.cookies.get(sessions.COOKIE), time.time())
    return Template(template_name=name, status_code=status,
                    context={"csrf": found.csrf if found else "", "signed_in": found is not None,
                             "base": BASE, "path": request.url.path,
                             "business": found.business if found else "", "role": found.role if found else "",
                             **context})


# ---- errors ------------------------------------------------------------------------------------


def _errors(settings: AppSettings) -> Any:
    def console_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return _error_page(request, settings, exc)

    return console_error


def _error_page(request: Request[Any, Any, Any], settings: AppSettings, exc: Exception) -> Response[Any]:
    """Console errors as pages: unauthenticated -> the sign-in page (HTMX: HX-Redirect); HTTP
    errors with their message; anything else a 503 page (logged, never a stack trace)."""
    if getattr(exc, "pick_business", False):  # the operator has not picked a business yet
        return Redirect(f"{BASE}/businesses", status_code=303)
    if isinstance(exc, NotAuthorizedException):
        if request.headers.get("hx-request"):
            return Response("", status_code=401, headers={"HX-Redirect": f"{BASE}/login"})
        if request.method == "GET":
            return Redirect(f"{BASE}/login?{urlencode({'next': request.url.path})}", status_code=303)
        return _page("error.html", request, settings, 401, title="Signed out", detail=str(exc.detail))
    if isinstance(exc, HTTPException):
        return _page("error.html", request, settings, exc.status_code, title=f"Error {exc.status_code}",
                     detail=str(exc.detail))
    log.error("console: unhandled %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
    return _page("error.html", request, settings, 503, title="Temporarily unavailable",
                 detail="the console could not load this page; try again in a moment")


# ---- sign in / out -----------------------------------------------------------------------------


def _next(raw: str | None) -> str:
    target = raw or ""
    return target if target.startswith(f"{BASE}/") and "//" not in target and "\\" not in target \
        else f"{BASE}/conversations"


@get("/login", opt={"public": True}, name="console:login")
async def login_page(request: Request[Any, Any, Any], settings: AppSettings, next: str | None = None) -> Template:
    return _page("login.html", request, settings, next=_next(next), off=not sessions.enabled(settings))


@post("/login", opt={"public": True}, status_code=303)
async def login(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any) -> Response[Any]:
    client = str(request.client.host if request.client else "unknown")
    limiter: RefusalLimiter = request.route_handler.opt["refusals"]  # one per app
    if not limiter.allow(client):
        return _page("login.html", request, settings, 429, next=f"{BASE}/conversations", off=False,
                     error=f"too many wrong tokens from this address; wait {limiter.retry_after(client)} s")
    form = await request.form()
    target = _next(str(form.get("next") or ""))
    if request.app.state.get("businesses") is not None:
        from orchestrator.web.console.businesses import login as business_login

        return await business_login(request, settings, str(form.get("token") or ""), target, limiter, client)
    if not sessions.token_matches(str(form.get("token") or ""), settings):
        if runtime is not None:
            try:
                await AuditLog(runtime.store, settings.retention_seconds).refused()
            except Exception as exc:
                log.error("refused console sign-in not counted: %s", exc)
        return _page("login.html", request, settings, 401, next=target, off=not settings.admin_token,
                     error="that is not the admin token (ORCHESTRATOR_ADMIN_TOKEN)")
    await _audit(runtime, settings, "POST /console/login", "", 303)
    response: Response[Any] = Redirect(target, status_code=303)
    response.set_cookie(_cookie(request, settings, sessions.issue(settings, time.time()), sessions.SESSION_SECONDS))
    return response


@post("/logout", status_code=303)
async def logout(request: Request[Any, Any, Any], settings: AppSettings) -> Response[Any]:
    await _changing(request, settings)
    response: Response[Any] = Redirect(f"{BASE}/login", status_code=303)
    response.set_cookie(_cookie(request, settings, "", 0))
    return response


@get("/")
async def home() -> Redirect:
    return Redirect(f"{BASE}/conversations", status_code=303)


# ---- conversations -----------------------------------------------------------------------------


def _day(raw: str | None) -> tuple[str | None, str | None]:
    """A `date` filter (YYYY-MM-DD, a UTC day) as the admin list's since / until."""
    if not raw:
        return None, None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValidationException(detail=f"date={raw[:20]!r} is not a day; pick one as YYYY-MM-DD") from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC") if epoch else ""


def _row(record: Any, settings: AppSettings) -> dict[str, Any]:
    return {"ref": sessions.seal(settings, record.id), "started": _when(record.started_at), "flow": record.flow,
            "channels": ", ".join(record.channels), "contact": redact_phone(record.contact),
            "status": record.status, "outcome": record.outcome or "", "turns": record.turns,
            "last_state": record.last_state, "last": _when(record.last_activity_at or record.started_at)}


async def _rows(runtime: Any, settings: AppSettings, flow: str | None, channel: str | None, outcome: str | None,
                day: str | None) -> list[dict[str, Any]]:
    since, until = _day(day)
    records = await admin.list_conversations.fn(
        runtime, flow=flow or None, channel=channel or None, outcome=outcome or None,
        since=since, until=until, limit=LIST_LIMIT)
    return [_row(r, settings) for r in records]


def _filters(flow: str | None, channel: str | None, outcome: str | None, day: str | None) -> dict[str, str]:
    return {k: v for k, v in (("flow", flow), ("channel", channel), ("outcome", outcome), ("date", day)) if v}


@get("/conversations")
async def conversations(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any,
                        flow: str | None = None, channel: str | None = None, outcome: str | None = None,
                        date: str | None = None) -> Template:
    rows = await _rows(runtime, settings, flow, channel, outcome, date)
    chosen = _filters(flow, channel, outcome, date)
    idioms = sorted({runtime.channels.get(n).capabilities.idiom for n in runtime.channels.names()} | {"voice"})
    return _page("conversations.html", request, settings, rows=rows, chosen=chosen, query=urlencode(chosen),
                 flows=runtime.catalog.flow_ids(), channels=idioms, poll=POLL_SECONDS,
                 outcomes=sorted({r["outcome"] for r in rows if r["outcome"]}),
                 yesterday=(datetime.fromtimestamp(runtime.clock(), UTC).date() - timedelta(days=1)).isoformat())


@get("/conversations/rows")
async def conversation_rows(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any,
                            flow: str | None = None, channel: str | None = None, outcome: str | None = None,
                            date: str | None = None) -> Template:
    chosen = _filters(flow, channel, outcome, date)
    return _page("_rows.html", request, settings, rows=await _rows(runtime, settings, flow, channel, outcome, date),
                 query=urlencode(chosen), poll=POLL_SECONDS)


def _line(line: Any, channels: list[str]) -> dict[str, Any]:
    data = line.data if isinstance(line.data, dict) else {}
    who = {"in": "Caller", "out": "Bot", "state": "State", "call": "Connector", "var": "Saved"}.get(line.dir, line.dir)
    detail = ""
    if line.dir == "call":
        detail = ", ".join(f"{k}: {v}" for k, v in data.items() if k in ("outcome", "detail", "ms", "error"))
    elif line.dir == "var":
        detail = redact_phone(str(line.data))[:200]
    return {"at": _when(line.at), "dir": line.dir, "who": who, "text": redact_phone(line.text),
            "channel": str(data.get("channel") or (channels[0] if channels and line.dir in ("in", "out") else "")),
            "detail": detail}


def _recordings(summary: dict[str, Any] | None) -> list[str]:
    links = []
    for field in (summary or {}).get("fields") or []:
        text = str(field.get("text") or "") if isinstance(field, dict) else ""
        if "recording" in str(field.get("name", "")).lower() and text.startswith(("https://", "http://")):
            links.append(text)
    return links


async def _conversation(runtime: Any, settings: AppSettings, ref: str) -> dict[str, Any]:
    """What the transcript page and its live fragment show of one conversation."""
    conv_id = sessions.unseal(settings, ref)
    if conv_id is None:
        raise HTTPException(status_code=404, detail="no such conversation (follow a link from the list; links "
                                                    "from before the admin token changed no longer open)")
    detail = await admin.get_conversation.fn(runtime, conv_id)
    record = detail.conversation
    summary = detail.summary or {}
    return {"ref": ref, "row": _row(record, settings), "poll": POLL_SECONDS,
            "lines": [_line(line, record.channels) for line in detail.transcript
                      if line.text or line.dir not in ("in", "out")],
            "states": detail.states, "live_state": detail.live_state if record.status == "active" else None,
            "language": detail.language,
            "summary": redact_phone(str(summary.get("text") or "")), "recordings": _recordings(summary)}


@get("/conversations/{ref:str}")
async def transcript(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any, ref: str) -> Template:
    return _page("transcript.html", request, settings, **await _conversation(runtime, settings, ref))


@get("/conversations/{ref:str}/live")
async def transcript_live(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any,
                          ref: str) -> Template:
    """The transcript fragment, polled while the conversation is active: a new turn shows up
    without reloading, and the polling stops with the conversation's end."""
    return _page("_conversation.html", request, settings, **await _conversation(runtime, settings, ref))


# ---- bookings ----------------------------------------------------------------------------------

AGENDA_DAYS = 60  # how far ahead the bookings page lists the calendar
RECENT_DAYS = 7  # and how far back: the visits just past, to mark the ones missed as no-shows


async def _bookings(runtime: Any, settings: AppSettings) -> tuple[list[dict[str, Any]], str]:
    """The bookings page's rows, soonest first, and where they come from: `calendar` (its
    agenda), `summaries` (a calendar without one) or `unavailable` (it failed)."""
    records = await admin.list_conversations.fn(runtime, limit=admin.MAX_LIMIT)
    now = runtime.clock()
    by_session = {r.session_id: r for r in sorted(records, key=lambda r: r.started_at)}
    calendar = runtime.connectors.get("calendar") if "calendar" in runtime.connectors.names() else None
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=RECENT_DAYS)
    try:
        agenda = await calendar.agenda((since, today + timedelta(days=AGENDA_DAYS))) if calendar else None
    except NotImplementedError:
        agenda = None
    except Exception as exc:  # the page says the calendar is unreachable rather than failing
        log.warning("console bookings: the calendar's agenda failed: %s", exc)
        return [], "unavailable"
    markable = callable(getattr(calendar, "mark_no_show", None))
    found: list[dict[str, Any]] = []
    if agenda is not None:
        for booking in agenda:
            record = by_session.get(str(booking.get("session_id") or ""))
            status = str(booking.get("status") or "confirmed")
            started = not _after(booking.get("start"), now)
            found.append({"id": str(booking.get("id") or ""),
                          "start": str(booking.get("label") or booking.get("start") or ""),
                          "sort": str(booking.get("start") or ""),
                          "status": "no-show" if status == "no_show" else
                                    "upcoming" if _after(booking.get("end"), now) else "past",
                          "can_mark": markable and status == "confirmed" and started and bool(booking.get("id")),
                          "what": str(booking.get("reason") or booking.get("title") or ""),
                          "who": str(booking.get("name") or ""),
                          "contact": redact_phone(str(booking.get("phone") or "")) if booking.get("phone") else "",
                          "row": _row(record, settings) if record is not None else None})
    else:
        for r in records:
            booking = (r.summary or {}).get("booking")
            if not isinstance(booking, dict):
                continue
            start = str(booking.get("start") or "")
            found.append({"id": str(booking.get("id") or ""), "start": str(booking.get("label") or start),
                          "sort": start, "status": "upcoming" if _after(booking.get("end") or start, now) else "past",
                          "can_mark": False,
                          "what": str(booking.get("summary") or booking.get("reason") or ""),
                          "who": str((r.summary or {}).get("name") or ""), "contact": redact_phone(r.contact),
                          "row": _row(r, settings)})
    found.sort(key=lambda b: str(b["sort"]))
    return found, "calendar" if agenda is not None else "summaries"


@get("/bookings")
async def bookings(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any) -> Template:
    """The calendar's bookings from a week ago on (the calendar connector's `agenda`: every
    booking, also those made by staff or elsewhere), each linked to the conversation that made
    it, a past one with its no-show button for owners; a calendar without an agenda: the
    bookings of the conversations' summaries."""
    found, source = await _bookings(runtime, settings)
    return _page("bookings.html", request, settings, bookings=found, source=source)


@post("/bookings/{booking_id:str}/no-show", status_code=200)
async def booking_no_show(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any,
                          booking_id: str) -> Response[Any]:
    """The no-show button (owners; the guard refuses staff): the admin API's mark. HTMX gets the
    booking's row again (with the refusal's reason when it was refused), a plain form the page."""
    await _changing(request, settings)
    status, error = 200, ""
    try:
        await admin.mark_no_show(runtime, booking_id)
    except HTTPException as exc:
        status, error = exc.status_code, str(exc.detail)
    await _audit(runtime, settings, "POST /console/bookings/{booking_id}/no-show", f"booking:{booking_id[:64]}",
                 status, request)
    if not request.headers.get("hx-request"):
        if error:
            raise HTTPException(status_code=status, detail=error)
        return Redirect(f"{BASE}/bookings", status_code=303)
    found, _ = await _bookings(runtime, settings)
    row = next((b for b in found if b["id"] == booking_id), None)
    if row is None:  # no longer listed (the day moved on): the whole page
        return Response("", status_code=200, headers={"HX-Redirect": f"{BASE}/bookings"})
    return _page("_booking.html", request, settings, b=row, error=error)


def _after(when: Any, now: float) -> bool:
    try:
        return datetime.fromisoformat(str(when)).timestamp() >= now
    except ValueError:
        return True


# ---- flows: list, funnel, diagram --------------------------------------------------------------


@get("/flows")
async def flows(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any) -> Template:
    return _page("flows.html", request, settings, flows=await admin.list_flows.fn(runtime))


def _over_time(records: list[Any]) -> dict[str, Any]:
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        by_day[_when(r.started_at)[:10]][r.outcome or r.status] += 1
    days = sorted(by_day)
    kinds = sorted({k for c in by_day.values() for k in c})
    return {"days": days, "series": {k: [by_day[d][k] for d in days] for k in kinds}}


@get("/flows/{flow_id:str}/funnel")
async def funnel(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any, flow_id: str) -> Template:
    report = await admin.flow_analytics.fn(runtime, flow_id)
    records = await admin.list_conversations.fn(runtime, flow=flow_id, limit=CHART_LIMIT)
    chart = {
        "states": [s.state for s in report.funnel],
        "reached": [s.reached for s in report.funnel],
        "dropped": [s.dropped for s in report.funnel],
        "waiting": [s.waiting for s in report.funnel],
        "channels": report.channels,
        "time": _over_time(records),
    }
    drops = sorted(report.drop_off.items(), key=lambda kv: -kv[1])
    # each no-show beside the conversations that ended as its conversation did: "1 of the 4 confirmed"
    totals = {**report.outcomes, "active": report.active, "abandoned": report.abandoned}
    no_shows = [(outcome, n, totals.get(outcome, n)) for outcome, n in report.no_shows_by_outcome.items()]
    return _page("funnel.html", request, settings, flow_id=flow_id, report=report, chart=chart, drops=drops,
                 no_shows=no_shows)


@get("/flows/{flow_id:str}/diagram")
async def diagram(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any, flow_id: str) -> Template:
    admin.check_flow_id(flow_id)
    return _page("diagram.html", request, settings, flow_id=flow_id)


_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


@get("/flows/{flow_id:str}/diagram.html")
async def diagram_document(runtime: Any, flow_id: str) -> Response[str]:
    """The admin API's HTML diagram, framed by the diagram page (sandboxed: scripts, no origin).
    Its own pan/zoom script is allowed by hash; everything from the flow in it is escaped."""
    drawn = await admin.flow_diagram.fn(runtime, flow_id, format="html")
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in _SCRIPT.findall(drawn.content))
    csp = (f"default-src 'none'; script-src {hashes or chr(39) + 'none' + chr(39)}; style-src 'unsafe-inline'; "
           "img-src data:; frame-ancestors 'self'")
    return Response(drawn.content, media_type="text/html", headers={"Content-Security-Policy": csp})


# ---- flows: the editor -------------------------------------------------------------------------


def _diff(serving: str, edited: str, revision: str) -> list[tuple[str, str]]:
    lines = difflib.unified_diff(serving.splitlines(), edited.splitlines(), f"serving ({revision})", "edited",
                                 lineterm="", n=2)
    kinds = {"+": "add", "-": "del", "@": "hunk"}
    return [(kinds.get(line[:1], "same") if not line.startswith(("+++", "---")) else "file", line) for line in lines]


async def _editor(runtime: Any, flow_id: str) -> dict[str, Any]:
    detail = await admin.get_flow.fn(runtime, flow_id)
    return {"flow_id": flow_id, "title": detail.title, "serving": detail.revision, "serving_source": detail.source,
            "revisions": list(reversed(detail.revisions))}


async def _report_context(runtime: Any, flow_id: str, serving_source: str, edited: str,
                          serving: str) -> dict[str, Any]:
    """What the validate route finds in `edited` (with each finding's severity), and the diff."""
    admin.check_flow_id(flow_id)
    diagnostics = await runtime.catalog.off_loop(admin.source_problems, runtime, flow_id, edited)
    return {"diagnostics": diagnostics, "checked": True,
            "errors": sum(d.is_error for d in diagnostics),
            "warnings": sum(not d.is_error for d in diagnostics),
            "diff": _diff(serving_source or "", edited, serving)}


@get("/flows/{flow_id:str}/edit")
async def edit(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any, flow_id: str,
               saved: str | None = None) -> Template:
    context = await _editor(runtime, flow_id)
    return _page("edit.html", request, settings, **context, source=context["serving_source"], saved=saved,
                 checked=False)


def _source(form: dict[str, Any]) -> str:
    return str(form.get("source") or "").replace("\r\n", "\n")


@post("/flows/{flow_id:str}/check", status_code=200)
async def check(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any, flow_id: str) -> Template:
    text = _source(await _changing(request, settings))
    context = await _editor(runtime, flow_id)
    name = "_report.html" if request.headers.get("hx-request") else "edit.html"
    return _page(name, request, settings, **context, source=text,
                 **await _report_context(runtime, flow_id, context["serving_source"], text, context["serving"]))


@post("/flows/{flow_id:str}/save", status_code=200)
async def save(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any,
               flow_id: str) -> Response[Any]:
    text = _source(await _changing(request, settings))
    saved, _ = await admin.publish_flow(runtime, flow_id, text)
    await _audit(runtime, settings, "POST /console/flows/{flow_id}/save", f"flow:{flow_id}", 200 if saved else 422,
                 request)
    if saved is not None:
        target = f"{BASE}/flows/{flow_id}/edit?{urlencode({'saved': saved.revision})}"
        if request.headers.get("hx-request"):
            return Response("", status_code=200, headers={"HX-Redirect": target})
        return Redirect(target, status_code=303)
    context = await _editor(runtime, flow_id)
    htmx = bool(request.headers.get("hx-request"))
    return _page("_report.html" if htmx else "edit.html", request, settings, 200 if htmx else 422, **context,
                 source=text, refused=True,
                 **await _report_context(runtime, flow_id, context["serving_source"], text, context["serving"]))


@post("/flows/{flow_id:str}/rollback", status_code=303)
async def rollback(request: Request[Any, Any, Any], settings: AppSettings, runtime: Any,
                   flow_id: str) -> Response[Any]:
    form = await _changing(request, settings)
    revision = str(form.get("revision") or "")
    saved, problems = await admin.rollback_flow(runtime, flow_id, revision)
    await _audit(runtime, settings, "POST /console/flows/{flow_id}/rollback", f"flow:{flow_id}",
                 303 if saved else 422, request)
    if saved is None:
        raise HTTPException(status_code=422, detail="revision {} no longer passes validation: {}".format(
            revision, "; ".join(d.text for d in problems)[:500]))
    target = f"{BASE}/flows/{flow_id}/edit?{urlencode({'saved': saved.revision})}"
    if request.headers.get("hx-request"):
        return Response("", status_code=200, headers={"HX-Redirect": target})
    return Redirect(target, status_code=303)


def _business_pages() -> list[Any]:
    from orchestrator.web.console.businesses import pick_business, picker

    return [picker, pick_business]


def console_router(settings: AppSettings) -> Router:
    return Router(
        path=BASE,
        route_handlers=[login_page, login, logout, home, conversations, conversation_rows, transcript, transcript_live,
                        bookings, booking_no_show, flows, funnel, diagram, diagram_document, edit, check, save,
                        rollback, *_business_pages()],
        guards=[_guard(settings)],
        exception_handlers={Exception: _errors(settings)},
        response_headers=HEADERS,
        include_in_schema=False,
        opt={"refusals": RefusalLimiter()},
    )

