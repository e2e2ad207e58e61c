"""Local fakes of a generic JSON CRM and of HubSpot's CRM v3 API (contacts search/create/patch, notes)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from fakekit import send_json, serve


def _matches(path: str, pattern: str) -> bool:
    return path == pattern[:-1] if pattern.endswith("$") else path.startswith(pattern)


class FakeServer:
    """A threaded JSON server; subclasses implement `route`. `script` holds scripted
    responses `(method, path_prefix, status, body, headers)` consumed first, FIFO. A path
    pattern is a prefix, or with a trailing `$` the exact path."""

    def __init__(self, token: str = "secret-token") -> None:
        self.token = token
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []
        self.script: list[tuple[str, str, int, Any, dict[str, str]]] = []
        self.hang_seconds = 0.0
        self.fail_after: list[tuple[str, str, int]] = []  # (method, path, status): do it, then answer status
        self.server, thread = serve(self._dispatch)
        thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self, method: str, prefix: str) -> list[dict[str, Any]]:
        return [body for m, p, body, _ in self.requests if m == method and _matches(p, prefix)]

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else {}
        path = urllib.parse.urlsplit(h.path).path
        with self.lock:
            self.requests.append((h.command, path, body, dict(h.headers)))
        if self.hang_seconds:
            time.sleep(self.hang_seconds)
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, {"status": "error", "category": "INVALID_AUTHENTICATION"})
        with self.lock:
            scripted = next((s for s in self.script if s[0] == h.command and _matches(path, s[1])), None)
            if scripted:
                self.script.remove(scripted)
        if scripted:
            return self._send(h, scripted[2], scripted[3], scripted[4])
        with self.lock:
            status, answer = self.route(h.command, path, body, dict(h.headers))
            failing = next((f for f in self.fail_after if f[0] == h.command and _matches(path, f[1])), None)
            if failing:
                self.fail_after.remove(failing)
                status, answer = failing[2], {"status": "error", "category": "INTERNAL_ERROR"}
        self._send(h, status, answer)

    def route(self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        raise NotImplementedError

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        send_json(h, status, body, headers)


class FakeCrm(FakeServer):
    """PUT /contacts/{phone} and /leads/{ref} replace; POST /conversations and /leads/{id}/notes
    dedupe on Idempotency-Key; PATCH /leads/{id} updates."""

    def __init__(self, token: str = "secret-token") -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.conversations: dict[str, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}  # Idempotency-Key -> {lead, text...}
        super().__init__(token)

    def _lead_route(self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        ref, _, rest = urllib.parse.unquote(path.removeprefix("/leads/")).partition("/")
        ref = next((r for r in self.leads if ref == f"L-{r[:8]}"), ref)  # by our ref or by the id it answered
        if method == "PUT" and not rest:
            created = ref not in self.leads
            self.leads[ref] = body
            return (201 if created else 200), {"id": f"L-{ref[:8]}", **body}
        if ref not in self.leads:
            return 404, {"error": "no such lead"}
        if method == "PATCH" and not rest:
            self.leads[ref].update({k: v for k, v in body.items() if v is not None})
            return 200, {"id": f"L-{ref[:8]}", **self.leads[ref]}
        if method == "POST" and rest == "notes":
            key = headers.get("Idempotency-Key") or str(len(self.notes))
            self.notes.setdefault(key, {"lead": ref, **body})
            return 201, {"id": key}
        return 404, {"error": "not found"}

    def route(self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        if method == "PUT" and path.startswith("/contacts/"):
            phone = urllib.parse.unquote(path.removeprefix("/contacts/"))
            created = phone not in self.contacts
            self.contacts[phone] = body
            return (201 if created else 200), {"id": phone, **body}
        if method in ("GET", "DELETE") and path.startswith("/contacts/"):
            phone = urllib.parse.unquote(path.removeprefix("/contacts/"))
            logged = [k for k, c in self.conversations.items() if phone in c.values()]  # under any field map
            leads = [k for k, lead in self.leads.items() if phone in lead.values()]
            if phone not in self.contacts and not logged and not leads:
                return 404, {"error": "not found"}
            if method == "GET":
                return 200, {"contact": self.contacts.get(phone),
                             "conversations": [self.conversations[k] for k in logged],
                             "leads": [self.leads[k] for k in leads]}
            removed = int(self.contacts.pop(phone, None) is not None)
            for key in logged:
                del self.conversations[key]
            for key in leads:
                del self.leads[key]
            return 200, {"removed": removed + len(logged) + len(leads)}
        if path.startswith("/leads/"):
            return self._lead_route(method, path, body, headers)
        if method == "POST" and path == "/conversations":
            key = headers.get("Idempotency-Key") or str(len(self.conversations))
            self.conversations.setdefault(key, body)
            return 201, {"id": key}
        return 404, {"error": "not found"}


class FakeHubSpot(FakeServer):
    def __init__(self, token: str = "pat-na1-secret") -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.next_id = 100
        super().__init__(token)

    def _new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def route(self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        if method == "POST" and path == "/crm/v3/objects/contacts/search":
            [flt] = body["filterGroups"][0]["filters"]
            hits = [{"id": cid, "properties": props} for cid, props in self.contacts.items()
                    if flt["operator"] == "EQ" and props.get(flt["propertyName"]) == flt["value"]]
            return 200, {"total": len(hits), "results": hits[: body.get("limit", 10)]}
        if method == "POST" and path == "/crm/v3/objects/contacts":
            props = body["properties"]
            for cid, existing in self.contacts.items():
                if props.get("email") and existing.get("email") == props["email"]:
                    return 409, {"status": "error", "category": "CONFLICT",
                                 "message": f"Contact already exists. Existing ID: {cid}"}
            cid = self._new_id()
            self.contacts[cid] = dict(props)
            return 201, {"id": cid, "properties": props}
        if method == "PATCH" and path.startswith("/crm/v3/objects/contacts/"):
            cid = path.rsplit("/", 1)[1]
            if cid not in self.contacts:
                return 404, {"status": "error", "category": "OBJECT_NOT_FOUND"}
            self.contacts[cid].update(body["properties"])
            return 200, {"id": cid, "properties": self.contacts[cid]}
        if method == "POST" and path == "/crm/v3/objects/contacts/gdpr-delete":
            return (204, None) if self.contacts.pop(str(body["objectId"]), None) is not None else (
                404, {"status": "error", "category": "OBJECT_NOT_FOUND"})
        if method == "DELETE" and path.startswith("/crm/v3/objects/notes/"):
            gone = self.notes.pop(path.rsplit("/", 1)[1], None)
            return (204, None) if gone is not None else (404, {"status": "error", "category": "OBJECT_NOT_FOUND"})
        if method == "POST" and path == "/crm/v3/objects/notes/search":  # (consistent at once, unlike HubSpot)
            hits = [{"id": nid, "properties": note["properties"]} for nid, note in self.notes.items()
                    if all(self._note_matches(note, f) for f in body["filterGroups"][0]["filters"])]
            return 200, {"total": len(hits), "results": hits[: body.get("limit", 10)]}
        if method == "POST" and path == "/crm/v3/objects/notes":
            for assoc in body.get("associations", []):
                if assoc["to"]["id"] not in self.contacts:
                    return 400, {"status": "error", "category": "VALIDATION_ERROR"}
            nid = self._new_id()
            self.notes[nid] = body
            return 201, {"id": nid, "properties": body["properties"]}
        return 404, {"status": "error", "category": "OBJECT_NOT_FOUND"}

    @staticmethod
    def _note_matches(note: dict[str, Any], flt: dict[str, str]) -> bool:
        if flt["propertyName"] == "associations.contact" and flt["operator"] == "EQ":
            return any(a["to"]["id"] == flt["value"] for a in note.get("associations", []))
        if flt["operator"] == "CONTAINS_TOKEN":
            return flt["value"] in str(note["properties"].get(flt["propertyName"], "")).replace("<", " ").split()
        raise AssertionError(f"the fake does not filter notes by {flt}")
