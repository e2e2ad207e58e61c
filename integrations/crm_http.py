"""A generic HTTP/JSON CRM connector (`crm.upsert_contact`, `crm.log_conversation` and the
lead actions `crm.create_lead`, `crm.find_contact`, `crm.add_note`, `crm.update_lead`).

Point it at any CRM (or a Zapier/Make webhook) that takes JSON:

    PUT    {CRM_URL}/contacts/{phone}  the contact (idempotent: PUT by the phone number)
    POST   {CRM_URL}/conversations     a conversation summary, `Idempotency-Key` header set
    PUT    {CRM_URL}/leads/{ref}       a lead: `ref` is the conversation's lead reference (session,
                                       flow, key), so a retried create_lead updates the same lead
    PATCH  {CRM_URL}/leads/{id}        `{"status": ..., "note": ...}` (id: lead_id, else the ref)
    POST   {CRM_URL}/leads/{id}/notes  `{"text": ...}`, `Idempotency-Key` header set
    GET    {CRM_URL}/contacts/{phone}  find_contact (404: `empty`)
    DELETE {CRM_URL}/contacts/{phone}  erasure: the contact and the summaries logged for it
                                       (answers `{"removed": n}`, or 404 when nothing is held)
    GET    {CRM_URL}/contacts/{phone}  the export: what the CRM holds (404: nothing)

Configuration (env or a dict): `CRM_URL`, `CRM_AUTH_HEADER` (`"Authorization: Bearer x"`),
`CRM_FIELD_MAP` (JSON: our field name -> the CRM's, e.g. `{"phone": "mobile"}`),
`CRM_TIMEOUT_SECONDS`. Timeouts and 5xx/429 answers are retried with backoff; every
failure is the `error` outcome with a log line naming the status, never the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import msgspec

from orchestrator.errors import ConfigError, ConnectorError
from orchestrator.plugins.base import PluginSettings, Secret, read_settings
from orchestrator.plugins.connectors import Action, CallContext, Connector, ConnectorResult, ErasureContext

from .crm_base import (
    AddNoteArgs,
    CreateLeadArgs,
    FindContactArgs,
    UpdateLeadArgs,
    bad_status,
    lead_ref,
    lead_status,
    lead_text,
)

log = logging.getLogger("integrations.crm")


class CrmError(ConnectorError):
    """The CRM answered an error or could not be reached after retries."""


class UpsertContactArgs(msgspec.Struct, kw_only=True):
    phone: str | None = None  # default: the conversation's contact
    name: str | None = None
    email: str | None = None
    fields: dict[str, Any] = {}  # anything else, passed through the field map


class LogConversationArgs(msgspec.Struct, kw_only=True):
    name: str | None = None
    reason: str | None = None
    preferred_time: str | None = None
    booking: Any = None  # the booking mapping from calendar.book, or None
    outcome: str | None = None
    transcript_url: str | None = None
    summary: str | None = None
    phone: str | None = None


Recheck = Callable[[], Awaitable[httpx.Response | None]]


async def request_with_retries(
    client: httpx.AsyncClient, method: str, url: str, *, what: str, retries: int = 3,
    base_delay: float = 0.5, max_delay: float = 30.0, recheck: Recheck | None = None, **kwargs: Any,
) -> httpx.Response:
    """One HTTP call with backoff on timeouts, connection errors, 429 (Retry-After) and 5xx.

    Returns the final response for a non-retryable status (the caller checks it); raises
    CrmError once retries are spent. A timeout or a 5xx leaves it unknown whether the server
    did the work: for a request that is not idempotent, `recheck()` is awaited after such a
    failure (before the next try, and before giving up) and a response it returns (the work
    found done) is returned instead of repeating the request."""
    for attempt in range(retries + 1):
        delay = base_delay * 2**attempt * (0.5 + random.random())
        unknown = False  # did the server perhaps do it?
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            problem, unknown = "timed out", not isinstance(exc, httpx.ConnectTimeout)
        except httpx.TransportError as exc:
            problem = f"connection failed ({type(exc).__name__})"
            unknown = not isinstance(exc, httpx.ConnectError)
        else:
            if response.status_code != 429 and response.status_code < 500:
                return response
            problem, unknown = f"HTTP {response.status_code}", response.status_code >= 500
            retry_after = response.headers.get("Retry-After")
            if retry_after is not None:
                try:
                    delay = float(retry_after)
                except ValueError:
                    pass
        if attempt < retries:
            log.warning("%s: %s, retry %d in %.2fs", what, problem, attempt + 1, min(delay, max_delay))
            await asyncio.sleep(min(delay, max_delay))
        if unknown and recheck is not None:
            found = await recheck()
            if found is not None:
                log.warning("%s: %s, but it was done; not repeated", what, problem)
                return found
        if attempt == retries:
            log.error("%s failed after %d tries: %s", what, retries + 1, problem)
            raise CrmError(f"{what} failed: {problem}")
    raise AssertionError("unreachable")  # pragma: no cover


def timeout_from_env(env: Mapping[str, str], name: str, default: float) -> float:
    return checked_timeout(name, env.get(name), default)


def checked_timeout(name: str, raw: str | None, default: float) -> float:
    """Seconds from a setting's text (unset: `default`); ConfigError naming `name` otherwise."""
    raw = raw or ""
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 300:
        raise ConfigError(f"{name}={raw[:20]!r} is not a timeout; give seconds, e.g. {name}={default:g}")
    return value


def summary_fields(args: LogConversationArgs, ctx: CallContext) -> dict[str, Any]:
    booking = args.booking if isinstance(args.booking, Mapping) else None
    return {
        "phone": args.phone or ctx.contact,
        "name": args.name,
        "reason": args.reason,
        "preferred_time": args.preferred_time,
        "booking": dict(booking) if booking else None,
        "booking_label": booking.get("label") if booking else None,
        "outcome": args.outcome,
        "transcript_url": args.transcript_url,
        "summary": args.summary,
        "flow": ctx.flow,
        "conversation_id": ctx.session_id,
    }


class CrmSettings(PluginSettings):
    url: str | None = None  # CRM_URL: the CRM's base URL; unset: no `crm` connector
    auth_header: Secret | None = None  # CRM_AUTH_HEADER: "Authorization: Bearer <token>"
    field_map: str = "{}"  # CRM_FIELD_MAP: JSON, our field name -> the CRM's
    timeout_seconds: str | None = None  # CRM_TIMEOUT_SECONDS (default 5)


class CrmHttp(Connector):
    name = "crm"
    settings_type = CrmSettings
    env_prefix = "CRM_"

    def __init__(
        self,
        url: str,
        *,
        auth_header: str | None = None,
        field_map: Mapping[str, str] | None = None,
        timeout_seconds: float = 5.0,
        retries: int = 3,
        retry_base_seconds: float = 0.5,
    ) -> None:
        if not url:
            raise ConfigError("CRM_URL is empty; set it to the CRM's base URL, e.g. https://crm.example.com/api")
        self.url = url.rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if auth_header:
            key, sep, value = auth_header.partition(":")
            if not sep or not value.strip():
                raise ConfigError("CRM_AUTH_HEADER must look like 'Authorization: Bearer <token>'")
            self._headers[key.strip()] = value.strip()
        self.field_map = dict(field_map or {})
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.retry_base_seconds = retry_base_seconds
        self.actions: Mapping[str, Action] = {
            "upsert_contact": Action(UpsertContactArgs, self.upsert_contact, "create or update the contact"),
            "log_conversation": Action(LogConversationArgs, self.log_conversation, "log a conversation summary"),
            "create_lead": Action(CreateLeadArgs, self.create_lead, "PUT the conversation's lead"),
            "find_contact": Action(FindContactArgs, self.find_contact, "GET the contact"),
            "add_note": Action(AddNoteArgs, self.add_note, "a note on the lead"),
            "update_lead": Action(UpdateLeadArgs, self.update_lead, "status: new, contacted, won or lost"),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str], **kwargs: Any) -> CrmHttp:
        return cls.from_settings(read_settings(CrmSettings, cls.env_prefix, env), **kwargs)

    @classmethod
    def is_configured(cls, config: CrmSettings) -> bool:
        return bool(config.url)

    @classmethod
    def from_settings(cls, config: CrmSettings, **kwargs: Any) -> CrmHttp:
        raw_map = config.field_map or "{}"
        try:
            field_map = json.loads(raw_map)
        except ValueError:
            example = '{"phone": "mobile"}'
            raise ConfigError(f"CRM_FIELD_MAP is not JSON: {raw_map[:60]!r}; write e.g. {example}") from None
        if not isinstance(field_map, dict):
            raise ConfigError("CRM_FIELD_MAP must be a JSON object: our field name -> the CRM's")
        return cls(config.url or "", auth_header=config.auth_header, field_map=field_map,
                   timeout_seconds=checked_timeout("CRM_TIMEOUT_SECONDS", config.timeout_seconds, 5.0), **kwargs)

    def _mapped(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return {self.field_map.get(k, k): v for k, v in data.items() if v is not None}

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, what: str,
                    headers: dict[str, str] | None = None, missing: str | None = None) -> ConnectorResult:
        """One call; `missing`: a 404 is the `empty` outcome with that detail."""
        content: dict[str, Any] = {"json": body} if body is not None else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_seconds, headers=self._headers) as client:
                response = await request_with_retries(
                    client, method, self.url + path, what=what, retries=self.retries,
                    base_delay=self.retry_base_seconds, headers=headers or {}, **content,
                )
        except CrmError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        if response.status_code == 404 and missing:
            return ConnectorResult(outcome="empty", detail=missing)
        if response.status_code >= 400:
            log.error("%s: HTTP %s", what, response.status_code)
            return ConnectorResult(outcome="error", detail=f"{what}: HTTP {response.status_code}")
        try:
            value = response.json() if response.content else {}
        except ValueError:
            value = {}
        return ConnectorResult(outcome="ok", value=value)

    async def upsert_contact(self, args: UpsertContactArgs, ctx: CallContext) -> ConnectorResult:
        phone = args.phone or ctx.contact
        body = self._mapped({"phone": phone, "name": args.name, "email": args.email, **args.fields})
        return await self._send("PUT", f"/contacts/{urllib.parse.quote(phone, safe='')}", body, "crm upsert_contact")

    async def log_conversation(self, args: LogConversationArgs, ctx: CallContext) -> ConnectorResult:
        body = self._mapped(summary_fields(args, ctx))
        # the same summary of the same conversation is one record, however often it is retried
        key = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return await self._send("POST", "/conversations", body, "crm log_conversation", {"Idempotency-Key": key})


    # -- leads ---------------------------------------------------------------------------------
    async def create_lead(self, args: CreateLeadArgs, ctx: CallContext) -> ConnectorResult:
        ref = lead_ref(ctx, args.key)
        text = lead_text(args)
        lead = {"ref": ref, "status": "new", "phone": args.phone or ctx.contact, **text,
                "source": text["source"] or ctx.flow, "notes": args.notes, "flow": ctx.flow,
                "conversation_id": ctx.session_id, **args.fields}
        result = await self._send("PUT", f"/leads/{ref}", self._mapped(lead), "crm create_lead")
        if result.outcome == "ok":
            answer = result.value if isinstance(result.value, Mapping) else {}
            result.value = {**{k: v for k, v in lead.items() if v is not None}, **answer, "id": answer.get("id") or ref}
        return result

    async def find_contact(self, args: FindContactArgs, ctx: CallContext) -> ConnectorResult:
        phone = urllib.parse.quote(args.phone or ctx.contact, safe="")
        return await self._send("GET", f"/contacts/{phone}", None, "crm find_contact", missing="no such contact")

    def _lead_path(self, lead_id: str | None, ctx: CallContext) -> str:
        return "/leads/" + urllib.parse.quote(lead_id or lead_ref(ctx), safe="")

    async def add_note(self, args: AddNoteArgs, ctx: CallContext) -> ConnectorResult:
        path = self._lead_path(args.lead_id, ctx) + "/notes"
        key = hashlib.sha256(json.dumps([ctx.session_id, path, args.text]).encode()).hexdigest()[:32]
        body = self._mapped({"text": args.text, "phone": args.phone or ctx.contact, "conversation_id": ctx.session_id})
        return await self._send("POST", path, body, "crm add_note", {"Idempotency-Key": key}, missing="no such lead")

    async def update_lead(self, args: UpdateLeadArgs, ctx: CallContext) -> ConnectorResult:
        status = lead_status(args.status)
        if status is None:
            return bad_status(args.status)
        return await self._send("PATCH", self._lead_path(args.lead_id, ctx),
                                self._mapped({"status": status, "note": args.note}), "crm update_lead",
                                missing="no such lead")

    # -- erasure (admin DELETE / GET /api/contacts/{phone}) ----------------------------------
    async def _contact_call(self, method: str, phone: str) -> httpx.Response:
        what = f"crm {'erase' if method == 'DELETE' else 'export'}_contact"
        async with httpx.AsyncClient(timeout=self.timeout_seconds, headers=self._headers) as client:
            response = await request_with_retries(
                client, method, f"{self.url}/contacts/{urllib.parse.quote(phone, safe='')}", what=what,
                retries=self.retries, base_delay=self.retry_base_seconds,
            )
        if response.status_code >= 400 and response.status_code != 404:
            log.error("%s: HTTP %s", what, response.status_code)
            raise CrmError(f"{what}: HTTP {response.status_code}")
        return response

    async def erase_contact(self, phone: str, ctx: ErasureContext) -> int:
        """DELETE the contact (the CRM removes its summaries too); raises CrmError on failure."""
        response = await self._contact_call("DELETE", phone)
        if response.status_code == 404:
            return 0
        try:
            return int((response.json() if response.content else {}).get("removed", 1))
        except (ValueError, TypeError, AttributeError):
            return 1

    async def export_contact(self, phone: str, ctx: ErasureContext) -> list[dict[str, Any]]:
        response = await self._contact_call("GET", phone)
        if response.status_code == 404 or not response.content:
            return []
        try:
            held = response.json()
        except ValueError:
            return []
        return held if isinstance(held, list) else [held]

