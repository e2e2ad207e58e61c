"""HubSpot CRM connector (`hubspot.upsert_contact`, `hubspot.log_conversation`, and the lead
actions `create_lead`, `find_contact`, `add_note`, `update_lead`; as `crm` when HUBSPOT_TOKEN
is set and CRM_URL is not).

Uses HubSpot's public CRM v3 API with a private-app token (`HUBSPOT_TOKEN`):
- upsert: `POST /crm/v3/objects/contacts/search` by phone, then `PATCH
  /crm/v3/objects/contacts/{id}` or `POST /crm/v3/objects/contacts` (a 409 "Contact already
  exists. Existing ID: n" on create, e.g. a racing twin, becomes a PATCH of n);
- a note: `POST /crm/v3/objects/notes` associated with the contact (associationTypeId 202,
  HUBSPOT_DEFINED = note to contact).
429 is retried after `Retry-After`; 5xx and timeouts with backoff. `HUBSPOT_API_BASE`
moves the base URL (tests point it at a local fake), `HUBSPOT_TIMEOUT_SECONDS` the timeout.

One note per summary, however often it is retried: the note ends with a reference (a hash
of the conversation id and the summary, like the generic CRM's Idempotency-Key) that is
searched for (`POST /crm/v3/objects/notes/search`, on the contact) before the note is
created, and again after a 5xx or timeout before the create is repeated.

Erasure (`erase_contact`): the notes on each contact with the phone are archived
(`DELETE /crm/v3/objects/notes/{id}`), then the contact is deleted with HubSpot's GDPR delete
(`POST /crm/v3/objects/contacts/gdpr-delete` by its id), which also blocks it from coming
back through forms.

Leads: HubSpot keeps a lead as a contact with a lead status (`hs_lead_status`), so
`create_lead` upserts the contact by phone (name, email, address, `fields` as properties) with
status NEW and adds a note with the reason, preferred time and source (one per conversation,
by its reference, like the summaries); `update_lead` sets the status (new NEW, contacted
CONNECTED, won OPEN_DEAL, lost UNQUALIFIED) on the contact `lead_id` names (create_lead's `id`)
or, without one, the conversation's contact. Limit: HubSpot's
search is eventually consistent (a few seconds), so a note created moments before a failed
answer can still be missed and doubled; a failing search never blocks the note.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from orchestrator.errors import ConfigError
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
from .crm_http import (
    CrmError,
    LogConversationArgs,
    Recheck,
    UpsertContactArgs,
    checked_timeout,
    request_with_retries,
    summary_fields,
)

log = logging.getLogger("integrations.hubspot")

DEFAULT_API_BASE = "https://api.hubapi.com"
NOTE_TO_CONTACT = 202
# our lead statuses -> HubSpot's hs_lead_status values (its default options)
LEAD_STATUS = {"new": "NEW", "contacted": "CONNECTED", "won": "OPEN_DEAL", "lost": "UNQUALIFIED"}
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")


def split_name(name: str | None) -> dict[str, str]:
    parts = (name or "").strip().split(None, 1)
    if not parts:
        return {}
    return {"firstname": parts[0], **({"lastname": parts[1]} if len(parts) > 1 else {})}


class HubSpotSettings(PluginSettings):
    token: Secret | None = None  # HUBSPOT_TOKEN: a private app's access token; unset: no `hubspot`
    api_base: str | None = None  # HUBSPOT_API_BASE: a fake server in tests
    timeout_seconds: str | None = None  # HUBSPOT_TIMEOUT_SECONDS (default 5)


class HubSpot(Connector):
    name = "hubspot"
    settings_type = HubSpotSettings
    env_prefix = "HUBSPOT_"

    def __init__(self, token: str, *, api_base: str | None = None, timeout_seconds: float = 5.0,
                 retries: int = 3, retry_base_seconds: float = 0.5) -> None:
        if not token:
            raise ConfigError("HUBSPOT_TOKEN is empty; create a private app in HubSpot and set its access token")
        self._token = token
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        self.retry_base_seconds = retry_base_seconds
        self.actions: Mapping[str, Action] = {
            "upsert_contact": Action(UpsertContactArgs, self.upsert_contact, "find by phone, then create or update"),
            "log_conversation": Action(LogConversationArgs, self.log_conversation, "a note on the contact"),
            "create_lead": Action(CreateLeadArgs, self.create_lead, "the contact with lead status NEW, and a note"),
            "find_contact": Action(FindContactArgs, self.find_contact, "the contact by phone"),
            "add_note": Action(AddNoteArgs, self.add_note, "a note on the contact"),
            "update_lead": Action(UpdateLeadArgs, self.update_lead, "the contact's lead status"),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str], **kwargs: Any) -> HubSpot:
        return cls.from_settings(read_settings(HubSpotSettings, cls.env_prefix, env), **kwargs)

    @classmethod
    def is_configured(cls, config: HubSpotSettings) -> bool:
        return bool(config.token)

    @classmethod
    def from_settings(cls, config: HubSpotSettings, **kwargs: Any) -> HubSpot:
        return cls(config.token or "", api_base=config.api_base,
                   timeout_seconds=checked_timeout("HUBSPOT_TIMEOUT_SECONDS", config.timeout_seconds, 5.0), **kwargs)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_base, timeout=self.timeout_seconds,
                                 headers={"Authorization": f"Bearer {self._token}"})

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, what: str,
                    body: dict[str, Any], recheck: Recheck | None = None) -> httpx.Response:
        return await request_with_retries(client, method, path, what=f"hubspot {what}", retries=self.retries,
                                          base_delay=self.retry_base_seconds, recheck=recheck, json=body)

    async def _find_note(self, client: httpx.AsyncClient, contact_id: str, ref: str) -> str | None:
        """The id of the contact's note carrying `ref`, or None (also when the search fails:
        a note twice is better than no note)."""
        search = {
            "filterGroups": [{"filters": [
                {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id},
                {"propertyName": "hs_note_body", "operator": "CONTAINS_TOKEN", "value": ref},
            ]}],
            "properties": ["hs_note_body"], "limit": 10,
        }
        try:
            found = await request_with_retries(client, "POST", "/crm/v3/objects/notes/search",
                                               what="hubspot note search", retries=0, json=search)
        except CrmError:
            return None
        if found.status_code != 200:
            log.warning("hubspot note search: HTTP %s; creating the note without the duplicate check",
                        found.status_code)
            return None
        for hit in found.json().get("results") or []:
            if ref in str((hit.get("properties") or {}).get("hs_note_body") or ""):
                return str(hit["id"])
        return None

    @staticmethod
    def _fail(what: str, response: httpx.Response) -> CrmError:
        category = ""
        try:
            category = str(response.json().get("category", ""))
        except ValueError:
            pass
        log.error("hubspot %s: HTTP %s %s", what, response.status_code, category)
        return CrmError(f"hubspot {what}: HTTP {response.status_code} {category}".rstrip())

    async def _upsert(self, client: httpx.AsyncClient, phone: str, properties: dict[str, Any]) -> str:
        search = {
            "filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ", "value": phone}]}],
            "properties": ["phone", "firstname", "lastname", "email"], "limit": 1,
        }
        found = await self._call(client, "POST", "/crm/v3/objects/contacts/search", "search", search)
        if found.status_code != 200:
            raise self._fail("contact search", found)
        results = found.json().get("results") or []
        contact_id = str(results[0]["id"]) if results else None
        if contact_id is None:
            created = await self._call(client, "POST", "/crm/v3/objects/contacts", "create contact",
                                       {"properties": properties})
            if created.status_code in (200, 201):
                return str(created.json()["id"])
            match = _EXISTING_ID.search(created.text) if created.status_code == 409 else None
            if not match:
                raise self._fail("create contact", created)
            contact_id = match.group(1)  # created meanwhile (search is eventually consistent): update it
        updated = await self._call(client, "PATCH", f"/crm/v3/objects/contacts/{contact_id}", "update contact",
                                   {"properties": properties})
        if updated.status_code != 200:
            raise self._fail("update contact", updated)
        return contact_id

    async def upsert_contact(self, args: UpsertContactArgs, ctx: CallContext) -> ConnectorResult:
        phone = args.phone or ctx.contact
        properties = {"phone": phone, **split_name(args.name), **({"email": args.email} if args.email else {}),
                      **{k: v for k, v in args.fields.items() if v is not None}}
        try:
            async with self._client() as client:
                contact_id = await self._upsert(client, phone, properties)
        except CrmError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        return ConnectorResult(outcome="ok", value={"id": contact_id})

    async def log_conversation(self, args: LogConversationArgs, ctx: CallContext) -> ConnectorResult:
        fields = summary_fields(args, ctx)
        phone = fields["phone"]
        rows = [
            ("Contact", phone), ("Name", args.name), ("Reason", args.reason),
            ("Preferred time", args.preferred_time), ("Booking", fields["booking_label"]),
            ("Outcome", args.outcome), ("Summary", args.summary), ("Flow", ctx.flow),
        ]
        body_html = "<br>".join(f"<b>{k}:</b> {html.escape(str(v))}" for k, v in rows if v)
        if args.transcript_url:
            url = html.escape(args.transcript_url, quote=True)
            body_html += f'<br><a href="{url}">Transcript</a>'
        ref = note_ref(ctx.session_id, body_html)
        body_html += f"<br><small>ref {ref}</small>"
        try:
            async with self._client() as client:
                contact_id = await self._upsert(client, phone, {"phone": phone, **split_name(args.name)})
                note_id = await self._find_note(client, contact_id, ref)
                if note_id is None:
                    note_id = await self._create_note(client, contact_id, ref, body_html, ctx.now)
        except CrmError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        return ConnectorResult(outcome="ok", value={"contact_id": contact_id, "note_id": note_id})

    async def _create_note(self, client: httpx.AsyncClient, contact_id: str, ref: str, body_html: str,
                           now: float) -> str:
        note = {
            "properties": {"hs_timestamp": datetime.fromtimestamp(now, UTC).isoformat(), "hs_note_body": body_html},
            "associations": [{"to": {"id": contact_id}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}]}],
        }

        async def recheck() -> httpx.Response | None:
            found = await self._find_note(client, contact_id, ref)
            return httpx.Response(200, json={"id": found}) if found else None

        created = await self._call(client, "POST", "/crm/v3/objects/notes", "create note", note, recheck)
        if created.status_code not in (200, 201):
            raise self._fail("create note", created)
        return str(created.json()["id"])


    # -- leads ---------------------------------------------------------------------------------
    async def _note_once(self, client: httpx.AsyncClient, contact_id: str, conversation: str, text: str,
                         now: float) -> str:
        body_html = "<br>".join(html.escape(line) for line in text.splitlines())
        ref = note_ref(conversation, body_html)
        body_html += f"<br><small>ref {ref}</small>"
        return await self._find_note(client, contact_id, ref) or await self._create_note(client, contact_id, ref,
                                                                                         body_html, now)

    async def _lead_contact(self, client: httpx.AsyncClient, lead_id: str | None, phone: str) -> str | None:
        if lead_id:
            return lead_id
        found = await self._contacts_with(client, phone)
        return str(found[0]["id"]) if found else None

    async def create_lead(self, args: CreateLeadArgs, ctx: CallContext) -> ConnectorResult:
        phone, text = args.phone or ctx.contact, lead_text(args)
        properties = {"phone": phone, **split_name(text["name"]), "hs_lead_status": LEAD_STATUS["new"],
                      **({"email": text["email"]} if text["email"] else {}),
                      **({"address": text["address"]} if text["address"] else {}),
                      **{k: v for k, v in args.fields.items() if v is not None}}
        rows = [("Lead", text["source"] or ctx.flow), ("Name", text["name"]), ("Reason", text["reason"]),
                ("Preferred time", text["preferred_time"]), ("Address", text["address"]), ("Note", args.notes)]
        try:
            async with self._client() as client:
                contact_id = await self._upsert(client, phone, properties)
                note_id = await self._note_once(client, contact_id, lead_ref(ctx, args.key),
                                                "\n".join(f"{k}: {v}" for k, v in rows if v), ctx.now)
        except CrmError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        return ConnectorResult(outcome="ok", value={"id": contact_id, "contact_id": contact_id, "note_id": note_id,
                                                    "status": "new", "phone": phone, **text})

    async def find_contact(self, args: FindContactArgs, ctx: CallContext) -> ConnectorResult:
        try:
            async with self._client() as client:
                found = await self._contacts_with(client, args.phone or ctx.contact)
        except CrmError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        if not found:
            return ConnectorResult(outcome="empty", detail="no such contact")
        props = found[0].get("properties") or {}
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p) or None
        status = next((k for k, v in LEAD_STATUS.items() if v == props.get("hs_lead_status")), None)
        return ConnectorResult(outcome="ok", value={"id": str(found[0]["id"]), "phone": props.get("phone"),
                                                    "name": name, "email": props.get("email"), "status": status,
                                                    "properties": props})

    async def add_note(self, args: AddNoteArgs, ctx: CallContext) -> ConnectorResult:
        try:
            async with self._client() as client:
                contact_id = await self._lead_contact(client, args.lead_id, args.phone or ctx.contact)
                if contact_id is None:
                    return ConnectorResult(outcome="empty", detail="no such contact")
                note_id = await self._note_once(client, contact_id, ctx.session_id, args.text, ctx.now)
        except CrmError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        return ConnectorResult(outcome="ok", value={"id": note_id, "lead_id": contact_id, "text": args.text})

    async def update_lead(self, args: UpdateLeadArgs, ctx: CallContext) -> ConnectorResult:
        status = lead_status(args.status)
        if status is None:
            return bad_status(args.status)
        try:
            async with self._client() as client:
                contact_id = await self._lead_contact(client, args.lead_id, ctx.contact)
                if contact_id is None:
                    return ConnectorResult(outcome="empty", detail="no such lead")
                updated = await self._call(client, "PATCH", f"/crm/v3/objects/contacts/{contact_id}", "update lead",
                                           {"properties": {"hs_lead_status": LEAD_STATUS[status]}})
                if updated.status_code == 404:
                    return ConnectorResult(outcome="empty", detail="no such lead")
                if updated.status_code != 200:
                    raise self._fail("update lead", updated)
                if args.note:
                    await self._note_once(client, contact_id, ctx.session_id, args.note, ctx.now)
        except CrmError as exc:
            return ConnectorResult(outcome="error", detail=str(exc))
        return ConnectorResult(outcome="ok", value={"id": contact_id, "status": status})

    # -- erasure (admin DELETE / GET /api/contacts/{phone}) ----------------------------------
    async def _contacts_with(self, client: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
        search = {
            "filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ", "value": phone}]}],
            "properties": ["phone", "firstname", "lastname", "email", "hs_lead_status"], "limit": 100,
        }
        found = await self._call(client, "POST", "/crm/v3/objects/contacts/search", "search", search)
        if found.status_code != 200:
            raise self._fail("contact search", found)
        return list(found.json().get("results") or [])

    async def _notes_of(self, client: httpx.AsyncClient, contact_id: str) -> list[dict[str, Any]]:
        search = {"filterGroups": [{"filters": [
            {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id}]}],
            "properties": ["hs_note_body", "hs_timestamp"], "limit": 100}
        found = await self._call(client, "POST", "/crm/v3/objects/notes/search", "note search", search)
        if found.status_code != 200:
            raise self._fail("note search", found)
        return list(found.json().get("results") or [])

    async def erase_contact(self, phone: str, ctx: ErasureContext) -> int:
        """Archive the contact's notes, then GDPR-delete the contact; raises CrmError on failure."""
        changed = 0
        async with self._client() as client:
            for contact in await self._contacts_with(client, phone):
                contact_id = str(contact["id"])
                for note in await self._notes_of(client, contact_id):
                    gone = await self._call(client, "DELETE", f"/crm/v3/objects/notes/{note['id']}", "delete note",
                                            {})
                    if gone.status_code not in (200, 204, 404):
                        raise self._fail("delete note", gone)
                    changed += gone.status_code != 404
                deleted = await self._call(client, "POST", "/crm/v3/objects/contacts/gdpr-delete", "gdpr delete",
                                           {"objectId": contact_id})
                if deleted.status_code not in (200, 204, 404):
                    raise self._fail("gdpr delete", deleted)
                changed += deleted.status_code != 404
        return changed

    async def export_contact(self, phone: str, ctx: ErasureContext) -> list[dict[str, Any]]:
        async with self._client() as client:
            contacts = await self._contacts_with(client, phone)
            return [{"id": c["id"], "properties": c.get("properties") or {},
                     "notes": [n.get("properties") or {} for n in await self._notes_of(client, str(c["id"]))]}
                    for c in contacts]


def note_ref(conversation_id: str, body_html: str) -> str:
    """The idempotency reference of a note: the same summary of the same conversation, the same ref."""
    return hashlib.sha256(json.dumps([conversation_id, body_html]).encode()).hexdigest()[:24]

