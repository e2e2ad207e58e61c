"""The embedded CRM: contacts, leads and notes in one SQLite file, for owners without a CRM.

    crm.create_lead    name, phone, email, reason, source, preferred_time, address, notes, fields, key
    crm.find_contact   phone                      -> the contact and their leads, or `empty`
    crm.add_note       text, lead_id              -> a note on the lead (default: this conversation's)
    crm.update_lead    status, lead_id, note      -> new | contacted | won | lost
    crm.upsert_contact / crm.log_conversation     -> as the HTTP CRM and HubSpot offer them

Idempotent on the conversation: `create_lead` from a conversation (its session id, flow and
`key`) whose lead is still open (new or contacted) updates that lead instead of adding one,
so a retried turn or a duplicate webhook never makes two leads; once the lead is won or lost
the next `create_lead` opens a new one. A note is stored once per (conversation, lead, text).
Check and write run in one `BEGIN IMMEDIATE` transaction, so racing processes cannot both
insert. Admin: `GET /api/leads` lists the leads (`list_leads`); the contact export and erasure
hooks cover contacts, leads and notes (erasure deletes them: a lead has no slot to keep).

    crm = EmbeddedCrm()          # $ORCHESTRATOR_CRM_DB, else crm.sqlite3 next to the calendar's file
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from orchestrator.errors import ConnectorError
from orchestrator.plugins.base import env, read_settings
from orchestrator.plugins.connectors import Action, CallContext, Connector, ConnectorResult, ErasureContext

from .crm_base import (
    LEAD_TEXT_FIELDS,
    AddNoteArgs,
    CreateLeadArgs,
    FindContactArgs,
    UpdateLeadArgs,
    answer_text,
    bad_status,
    lead_status,
    lead_text,
)
from .crm_http import CrmHttp, CrmSettings, LogConversationArgs, UpsertContactArgs, summary_fields
from .embedded_calendar import DEFAULT_PATH as CALENDAR_DEFAULT_PATH
from .embedded_calendar import ENV_PATH as CALENDAR_ENV_PATH
from .hubspot import HubSpot, HubSpotSettings
from .sqlite_file import SqliteFile

log = logging.getLogger("integrations.embedded_crm")

ENV_PATH = "ORCHESTRATOR_CRM_DB"
FILE_NAME = "crm.sqlite3"


class CrmStorageError(ConnectorError):
    """The SQLite file could not be read or written; the flow takes its `error` route."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    phone TEXT PRIMARY KEY,
    name TEXT,
    email TEXT,
    fields TEXT NOT NULL DEFAULT '{}',
    created_ts REAL NOT NULL,
    updated_ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leads (
    id TEXT PRIMARY KEY,
    session_id TEXT,
    flow TEXT NOT NULL DEFAULT '',
    lead_key TEXT NOT NULL DEFAULT '',
    phone TEXT,
    name TEXT,
    email TEXT,
    reason TEXT,
    source TEXT,
    preferred_time TEXT,
    address TEXT,
    fields TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'new',
    created_ts REAL NOT NULL,
    updated_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leads_by_conversation ON leads (session_id, flow, lead_key, status);
CREATE INDEX IF NOT EXISTS leads_by_time ON leads (created_ts);
CREATE INDEX IF NOT EXISTS leads_by_phone ON leads (phone);
CREATE TABLE IF NOT EXISTS notes (
    id TEXT PRIMARY KEY,
    ref TEXT NOT NULL UNIQUE,
    lead_id TEXT,
    phone TEXT,
    session_id TEXT,
    text TEXT NOT NULL,
    created_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_by_lead ON notes (lead_id);
CREATE INDEX IF NOT EXISTS notes_by_phone ON notes (phone);
"""
_SET_GIVEN = ", ".join(f"{k} = COALESCE(?, {k})" for k in LEAD_TEXT_FIELDS)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _ref(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def default_path(db: str | None = None, calendar_db: str | None = None) -> Path:
    """`db` (ORCHESTRATOR_CRM_DB), else crm.sqlite3 in the embedded calendar's folder (one folder per deployment)."""
    if db:
        return Path(db).absolute()
    return Path(calendar_db or CALENDAR_DEFAULT_PATH).absolute().parent / FILE_NAME


class EmbeddedCrm(SqliteFile, Connector):
    name = "crm"
    schema = _SCHEMA
    label = "crm"
    storage_error = CrmStorageError

    def __init__(self, path: str | os.PathLike[str] | None = None, **_: Any) -> None:
        self.path = Path(path).absolute() if path is not None else default_path(os.environ.get(ENV_PATH),
                                                                                  os.environ.get(CALENDAR_ENV_PATH))
        self.actions: Mapping[str, Action] = {
            "create_lead": Action(CreateLeadArgs, self.create_lead, "a lead (once per conversation)"),
            "find_contact": Action(FindContactArgs, self.find_contact, "the contact and their leads"),
            "add_note": Action(AddNoteArgs, self.add_note, "a note on the lead"),
            "update_lead": Action(UpdateLeadArgs, self.update_lead, "status: new, contacted, won or lost"),
            "upsert_contact": Action(UpsertContactArgs, self.upsert_contact, "create or update the contact"),
            "log_conversation": Action(LogConversationArgs, self.log_conversation, "the summary as a note"),
        }

    # -- rows -> values ------------------------------------------------------------------------
    @staticmethod
    def _lead_value(row: sqlite3.Row, notes: list[sqlite3.Row] | None = None) -> dict[str, Any]:
        value = {k: row[k] for k in ("id", "status", "phone", *LEAD_TEXT_FIELDS, "flow", "session_id")}
        value["fields"] = json.loads(row["fields"])
        value["created_at"], value["updated_at"] = _iso(row["created_ts"]), _iso(row["updated_ts"])
        if notes is not None:
            value["notes"] = [EmbeddedCrm._note_value(n) for n in notes]
        return value

    @staticmethod
    def _note_value(row: sqlite3.Row) -> dict[str, Any]:
        return {"id": row["id"], "lead_id": row["lead_id"], "text": row["text"], "created_at": _iso(row["created_ts"])}

    @staticmethod
    def _contact_value(row: sqlite3.Row) -> dict[str, Any]:
        return {"id": row["phone"], "phone": row["phone"], "name": row["name"], "email": row["email"],
                "fields": json.loads(row["fields"]), "created_at": _iso(row["created_ts"]),
                "updated_at": _iso(row["updated_ts"])}

    # -- storage (worker threads) ----------------------------------------------------------------
    @staticmethod
    def _upsert_contact(conn: sqlite3.Connection, phone: str, name: str | None, email: str | None,
                        fields: Mapping[str, Any], now: float) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM contacts WHERE phone = ?", (phone,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO contacts (phone, name, email, fields, created_ts, updated_ts)"
                         " VALUES (?, ?, ?, ?, ?, ?)", (phone, name, email, json.dumps(dict(fields)), now, now))
        else:
            merged = {**json.loads(row["fields"]), **fields}
            conn.execute("UPDATE contacts SET name = COALESCE(?, name), email = COALESCE(?, email), fields = ?,"
                         " updated_ts = ? WHERE phone = ?", (name, email, json.dumps(merged), now, phone))
        updated: sqlite3.Row = conn.execute("SELECT * FROM contacts WHERE phone = ?", (phone,)).fetchone()
        return updated

    @staticmethod
    def _conversation_lead(conn: sqlite3.Connection, ctx: CallContext, key: str | None = None,
                           open_only: bool = False) -> sqlite3.Row | None:
        """This conversation's latest lead (with `key`, only that one; `open_only`: new or contacted)."""
        sql = "SELECT * FROM leads WHERE session_id = ? AND flow = ?"
        params: list[Any] = [ctx.session_id, ctx.flow]
        if key is not None:
            sql, params = sql + " AND lead_key = ?", [*params, key]
        if open_only:
            sql += " AND status IN ('new', 'contacted')"
        row: sqlite3.Row | None = conn.execute(sql + " ORDER BY created_ts DESC, rowid DESC LIMIT 1",
                                               params).fetchone()
        return row

    @staticmethod
    def _add_note(conn: sqlite3.Connection, ref: str, lead_id: str | None, phone: str | None, session_id: str,
                  text: str, now: float) -> sqlite3.Row:
        conn.execute("INSERT OR IGNORE INTO notes (id, ref, lead_id, phone, session_id, text, created_ts)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)", (uuid.uuid4().hex, ref, lead_id, phone, session_id, text, now))
        note: sqlite3.Row = conn.execute("SELECT * FROM notes WHERE ref = ?", (ref,)).fetchone()
        return note

    def _notes_of(self, conn: sqlite3.Connection, lead_id: str) -> list[sqlite3.Row]:
        return conn.execute("SELECT * FROM notes WHERE lead_id = ? ORDER BY created_ts, rowid", (lead_id,)).fetchall()

    def _create_lead_sync(self, args: CreateLeadArgs, ctx: CallContext) -> ConnectorResult:
        phone, now = args.phone or ctx.contact, ctx.now
        with self._write() as conn:
            self._upsert_contact(conn, phone, answer_text(args.name), answer_text(args.email), {}, now)
            mine = self._conversation_lead(conn, ctx, args.key, open_only=True)
            if mine is None:
                lead_id, detail, fields = uuid.uuid4().hex, None, dict(args.fields)
                conn.execute("INSERT INTO leads (id, session_id, flow, lead_key, source, created_ts, updated_ts)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (lead_id, ctx.session_id, ctx.flow, args.key, ctx.flow, now, now))
            else:  # the same conversation asking again (a retried turn): that lead, with what is new
                lead_id, detail = mine["id"], "already created"
                fields = {**json.loads(mine["fields"]), **args.fields}
            # what is given replaces what the lead had; what is not given stays
            conn.execute(f"UPDATE leads SET phone = ?, fields = ?, {_SET_GIVEN} WHERE id = ?",
                         (phone, json.dumps(fields), *lead_text(args).values(), lead_id))
            row = conn.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()
            if mine is not None and dict(row) != dict(mine):
                conn.execute("UPDATE leads SET updated_ts = ? WHERE id = ?", (now, lead_id))
            if args.notes:
                self._add_note(conn, _ref(ctx.session_id, lead_id, args.notes), lead_id, phone, ctx.session_id,
                               args.notes, now)
            row = conn.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()
            value = self._lead_value(row, self._notes_of(conn, lead_id))
        if detail is None:
            log.info("embedded crm: lead %s created (flow %s)", lead_id, ctx.flow)
        return ConnectorResult(outcome="ok", value=value, detail=detail)

    def _find_contact_sync(self, phone: str) -> ConnectorResult:
        with self._read() as conn:
            contact = conn.execute("SELECT * FROM contacts WHERE phone = ?", (phone,)).fetchone()
            leads = conn.execute("SELECT * FROM leads WHERE phone = ? ORDER BY created_ts DESC, rowid DESC",
                                 (phone,)).fetchall()
            if contact is None and not leads:
                return ConnectorResult(outcome="empty", detail="no such contact")
            known = {"id": phone, "phone": phone}
            value: dict[str, Any] = self._contact_value(contact) if contact is not None else known
            value["leads"] = [self._lead_value(r, self._notes_of(conn, r["id"])) for r in leads]
        return ConnectorResult(outcome="ok", value=value)

    def _lead_for(self, conn: sqlite3.Connection, lead_id: str | None, ctx: CallContext) -> sqlite3.Row | None:
        if lead_id:
            row: sqlite3.Row | None = conn.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)).fetchone()
            return row
        return self._conversation_lead(conn, ctx)

    def _add_note_sync(self, args: AddNoteArgs, ctx: CallContext) -> ConnectorResult:
        if not args.text.strip():
            return ConnectorResult(outcome="error", detail="crm.add_note: `text` is empty; give the note's text")
        with self._write() as conn:
            lead = self._lead_for(conn, args.lead_id, ctx)
            if args.lead_id and lead is None:
                return ConnectorResult(outcome="empty", detail="no such lead")
            lead_id = lead["id"] if lead is not None else None
            phone = args.phone or (lead["phone"] if lead is not None else None) or ctx.contact
            note = self._add_note(conn, _ref(ctx.session_id, lead_id, args.text), lead_id, phone, ctx.session_id,
                                  args.text, ctx.now)
        return ConnectorResult(outcome="ok", value=self._note_value(note))

    def _update_lead_sync(self, args: UpdateLeadArgs, ctx: CallContext) -> ConnectorResult:
        status = lead_status(args.status)
        if status is None:
            return bad_status(args.status)
        with self._write() as conn:
            lead = self._lead_for(conn, args.lead_id, ctx)
            if lead is None:
                return ConnectorResult(outcome="empty", detail="no such lead")
            if lead["status"] != status:
                conn.execute("UPDATE leads SET status = ?, updated_ts = ? WHERE id = ?", (status, ctx.now, lead["id"]))
            if args.note:
                self._add_note(conn, _ref(ctx.session_id, lead["id"], args.note), lead["id"], lead["phone"],
                               ctx.session_id, args.note, ctx.now)
            row = conn.execute("SELECT * FROM leads WHERE id = ?", (lead["id"],)).fetchone()
            value = self._lead_value(row, self._notes_of(conn, lead["id"]))
        return ConnectorResult(outcome="ok", value=value)

    def _upsert_contact_sync(self, args: UpsertContactArgs, ctx: CallContext) -> ConnectorResult:
        with self._write() as conn:
            row = self._upsert_contact(conn, args.phone or ctx.contact, args.name, args.email, args.fields, ctx.now)
        return ConnectorResult(outcome="ok", value=self._contact_value(row))

    def _log_conversation_sync(self, args: LogConversationArgs, ctx: CallContext) -> ConnectorResult:
        fields = summary_fields(args, ctx)
        rows = [("Name", args.name), ("Reason", args.reason), ("Preferred time", args.preferred_time),
                ("Booking", fields["booking_label"]), ("Outcome", args.outcome), ("Summary", args.summary),
                ("Transcript", args.transcript_url), ("Flow", ctx.flow)]
        text = "\n".join(f"{k}: {v}" for k, v in rows if v)
        with self._write() as conn:
            self._upsert_contact(conn, fields["phone"], args.name, None, {}, ctx.now)
            lead = self._conversation_lead(conn, ctx)
            lead_id = lead["id"] if lead is not None else None
            note = self._add_note(conn, _ref(ctx.session_id, lead_id, text), lead_id, fields["phone"],
                                  ctx.session_id, text, ctx.now)
        return ConnectorResult(outcome="ok", value={"contact_id": fields["phone"], "note_id": note["id"]})

    # -- actions -----------------------------------------------------------------------------------
    async def create_lead(self, args: CreateLeadArgs, ctx: CallContext) -> ConnectorResult:
        return await self._thread("create_lead", self._create_lead_sync, args, ctx)

    async def find_contact(self, args: FindContactArgs, ctx: CallContext) -> ConnectorResult:
        return await self._thread("find_contact", self._find_contact_sync, args.phone or ctx.contact)

    async def add_note(self, args: AddNoteArgs, ctx: CallContext) -> ConnectorResult:
        return await self._thread("add_note", self._add_note_sync, args, ctx)

    async def update_lead(self, args: UpdateLeadArgs, ctx: CallContext) -> ConnectorResult:
        return await self._thread("update_lead", self._update_lead_sync, args, ctx)

    async def upsert_contact(self, args: UpsertContactArgs, ctx: CallContext) -> ConnectorResult:
        return await self._thread("upsert_contact", self._upsert_contact_sync, args, ctx)

    async def log_conversation(self, args: LogConversationArgs, ctx: CallContext) -> ConnectorResult:
        return await self._thread("log_conversation", self._log_conversation_sync, args, ctx)

    # -- admin (GET /api/leads) ---------------------------------------------------------------------
    async def list_leads(self, *, status: str | None = None, limit: int = 100, offset: int = 0,
                         ) -> list[dict[str, Any]]:
        """Leads, newest first (optionally of one status), each with its notes."""
        return await self._thread("list_leads", self._list_sync, status, limit, offset)

    def _list_sync(self, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        if not self.path.exists():  # nothing was ever written: no file made just to list
            return []
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        with self._read() as conn:
            rows = conn.execute(f"SELECT * FROM leads {where} ORDER BY created_ts DESC, rowid DESC"
                                " LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
            return [self._lead_value(r, self._notes_of(conn, r["id"])) for r in rows]

    # -- erasure (admin DELETE / GET /api/contacts/{phone}) ---------------------------------------
    _OF_CONTACT = "(phone = ? OR session_id LIKE '%:' || ?)"

    async def erase_contact(self, phone: str, ctx: ErasureContext) -> int:
        """Delete the contact, their leads and every note on them or written in their conversations."""
        return await self._thread("erase_contact", self._erase_sync, phone)

    def _erase_sync(self, phone: str) -> int:
        if not self.path.exists():
            return 0
        with self._write() as conn:
            removed = conn.execute(f"DELETE FROM notes WHERE {self._OF_CONTACT} OR lead_id IN (SELECT id FROM leads"
                                   f" WHERE {self._OF_CONTACT})", (phone, phone, phone, phone)).rowcount
            removed += conn.execute(f"DELETE FROM leads WHERE {self._OF_CONTACT}", (phone, phone)).rowcount
            removed += conn.execute("DELETE FROM contacts WHERE phone = ?", (phone,)).rowcount
        return int(removed)

    async def export_contact(self, phone: str, ctx: ErasureContext) -> list[dict[str, Any]]:
        """The contact (`record: contact`), their leads with notes (`record: lead`), other notes (`record: note`)."""
        return await self._thread("export_contact", self._export_sync, phone)

    def _export_sync(self, phone: str) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self._read() as conn:
            out: list[dict[str, Any]] = []
            contact = conn.execute("SELECT * FROM contacts WHERE phone = ?", (phone,)).fetchone()
            if contact is not None:
                out.append({"record": "contact", **self._contact_value(contact)})
            leads = conn.execute(f"SELECT * FROM leads WHERE {self._OF_CONTACT} ORDER BY created_ts",
                                 (phone, phone)).fetchall()
            ids = {r["id"] for r in leads}
            out += [{"record": "lead", **self._lead_value(r, self._notes_of(conn, r["id"]))} for r in leads]
            notes = conn.execute(f"SELECT * FROM notes WHERE {self._OF_CONTACT} ORDER BY created_ts",
                                 (phone, phone)).fetchall()
            out += [{"record": "note", **self._note_value(n)} for n in notes if n["lead_id"] not in ids]
        return out


class CrmChoiceSettings(CrmSettings):
    """The `crm` entry point's settings: the HTTP CRM's (CRM_*), HubSpot's and the embedded file's."""

    hubspot_token: Annotated[str | None, env("HUBSPOT_TOKEN", secret=True)] = None
    hubspot_api_base: Annotated[str | None, env("HUBSPOT_API_BASE")] = None
    hubspot_timeout_seconds: Annotated[str | None, env("HUBSPOT_TIMEOUT_SECONDS")] = None
    db: Annotated[str | None, env(ENV_PATH)] = None  # the embedded CRM's SQLite file
    calendar_db: Annotated[str | None, env(CALENDAR_ENV_PATH)] = None  # default: crm.sqlite3 next to it


class Crm(Connector):
    """The `crm` entry point. A configured external CRM wins: the HTTP CRM when CRM_URL is set,
    else HubSpot when HUBSPOT_TOKEN is; with neither, the embedded CRM (always configured). All
    offer the same actions, so a flow does not change when the owner connects a CRM."""

    name = "crm"
    settings_type = CrmChoiceSettings
    env_prefix = "CRM_"

    @classmethod
    def is_configured(cls, config: CrmChoiceSettings) -> bool:
        return True

    @classmethod
    def from_settings(cls, config: CrmChoiceSettings, **kwargs: Any) -> Connector:
        if config.url:
            return CrmHttp.from_settings(config, **kwargs)
        if config.hubspot_token:
            return HubSpot.from_settings(HubSpotSettings(token=config.hubspot_token, api_base=config.hubspot_api_base,
                                                         timeout_seconds=config.hubspot_timeout_seconds), **kwargs)
        return EmbeddedCrm(path=default_path(config.db, config.calendar_db))


def crm_from_env(environ: Mapping[str, str], **kwargs: Any) -> Connector:
    """`Crm` built from an environment mapping."""
    config: CrmChoiceSettings = read_settings(CrmChoiceSettings, Crm.env_prefix, environ)
    return Crm.from_settings(config, **kwargs)
