"""A local fake of Google Calendar v3 + the OAuth token endpoint, for the real client library.

Implements what the connector uses: the JWT-bearer token grant (signature checked with
the service account's public key), freeBusy, events insert/get/delete/patch/list with
Google's error shapes. Like Google it accepts overlapping events and answers 409
`duplicate` for a repeated client id, deleted events keep their id (status cancelled), and a
patch merges objects key by key (one private extended property set, the others kept).
Fault injection: `faults` (scripted responses, FIFO, by method+path prefix), `hang_seconds`,
and `insert_barrier` (hold inserts until N arrive, to force a real race).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from fakekit import send_json, serve

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class Fault:
    method: str
    path_prefix: str  # after /calendar/v3, e.g. "/freeBusy"
    status: int
    reason: str = "backendError"
    headers: dict[str, str] = field(default_factory=dict)
    after: bool = False  # do the request, then answer the error anyway (a 5xx after the write)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _error(status: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"errors": [{"domain": "global", "reason": reason, "message": message}],
                      "code": status, "message": message}}


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Google's patch semantics: objects are merged key by key (so one private extended property
    can be set without resending the others); any other value, lists too, replaces."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class _AnswerReplaced:
    """A request handler whose answer is replaced by the fault's error (the work is done)."""

    def __init__(self, h: BaseHTTPRequestHandler, fault: Fault) -> None:
        self.h, self.fault = h, fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self.h, name)


class FakeGoogleCalendar:
    def __init__(self, public_key_pem: str | None = None) -> None:
        self.public_key_pem = public_key_pem
        self.calendars: dict[str, dict[str, dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.tokens: set[str] = set()
        self.faults: list[Fault] = []
        self.hang_seconds = 0.0
        self.insert_barrier: threading.Barrier | None = None
        self.unknown_calendars: set[str] = set()
        self.server, self.thread = serve(self._handle)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_base(self) -> str:
        return self.base + "/calendar/v3/"

    @property
    def token_uri(self) -> str:
        return self.base + "/token"

    def start(self) -> FakeGoogleCalendar:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, calendar_id: str, live_only: bool = True) -> list[dict[str, Any]]:
        with self.lock:
            items = list(self.calendars.get(calendar_id, {}).values())
        return [e for e in items if not live_only or e.get("status") != "cancelled"]

    def add_event(self, calendar_id: str, start: str, end: str, summary: str = "Staff meeting") -> None:
        """An event entered by a person in the Google UI (random id, no private properties)."""
        with self.lock:
            cal = self.calendars.setdefault(calendar_id, {})
            eid = f"human{len(cal)}"
            cal[eid] = {"id": eid, "status": "confirmed", "summary": summary,
                        "start": {"dateTime": start}, "end": {"dateTime": end}}

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    # -- dispatch ---------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        url = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        if url.path == "/token":
            return self._token(h, raw)
        path = url.path.removeprefix("/calendar/v3")
        with self.lock:
            self.requests.append((method, path))
        if h.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return self._send(h, 401, _error(401, "authError", "Invalid Credentials"))
        if self.hang_seconds:
            time.sleep(self.hang_seconds)
        with self.lock:
            fault = next((f for f in self.faults if f.method == method and path.startswith(f.path_prefix)), None)
            if fault:
                self.faults.remove(fault)
        if fault and not fault.after:
            return self._send(h, fault.status, _error(fault.status, fault.reason, "injected"), fault.headers)
        if fault:
            h = _AnswerReplaced(h, fault)
        body = json.loads(raw) if raw else {}
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and parts == ["freeBusy"]:
            return self._send(h, 200, self._freebusy(body))
        if len(parts) >= 3 and parts[0] == "calendars" and parts[2] == "events":
            cal_id = parts[1]
            if len(parts) == 3 and method == "POST":
                return self._insert(h, cal_id, body)
            if len(parts) == 3 and method == "GET":
                return self._send(h, 200, self._list(cal_id, query))
            if len(parts) == 4:
                return self._one(h, method, cal_id, parts[3], body)
        return self._send(h, 404, _error(404, "notFound", "Not Found"))

    @staticmethod
    def _send(h: Any, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(h, _AnswerReplaced):
            h, fault = h.h, h.fault
            status, body, headers = fault.status, _error(fault.status, fault.reason, "injected"), fault.headers
        send_json(h, status, body, headers, content_type="application/json; charset=UTF-8")

    def _token(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        form = dict(urllib.parse.parse_qsl(raw.decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not form.get("assertion"):
            return self._send(h, 400, {"error": "unsupported_grant_type"})
        if self.public_key_pem:
            from google.auth import jwt

            try:
                # google-auth always signs for Google's token URL, whatever token_uri it posts to
                claims = jwt.decode(form["assertion"], certs=self.public_key_pem, audience=GOOGLE_TOKEN_AUDIENCE)
            except ValueError as exc:
                return self._send(h, 400, {"error": "invalid_grant", "error_description": str(exc)})
            if "calendar" not in claims.get("scope", ""):
                return self._send(h, 400, {"error": "invalid_scope"})
        token = f"ya29.fake-{len(self.tokens)}"
        with self.lock:
            self.tokens.add(token)
        self._send(h, 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _freebusy(self, body: dict[str, Any]) -> dict[str, Any]:
        lo, hi = _ts(body["timeMin"]), _ts(body["timeMax"])
        calendars: dict[str, Any] = {}
        for item in body.get("items", []):
            cal_id = item["id"]
            if cal_id in self.unknown_calendars:
                calendars[cal_id] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                continue
            busy = [
                {"start": e["start"]["dateTime"], "end": e["end"]["dateTime"]}
                for e in self.events(cal_id)
                if e.get("transparency") != "transparent"
                and _ts(e["start"]["dateTime"]) < hi and _ts(e["end"]["dateTime"]) > lo
            ]
            calendars[cal_id] = {"busy": sorted(busy, key=lambda b: _ts(b["start"]))}
        return {"kind": "calendar#freeBusy", "timeMin": body["timeMin"], "timeMax": body["timeMax"],
                "calendars": calendars}

    def _insert(self, h: BaseHTTPRequestHandler, cal_id: str, body: dict[str, Any]) -> None:
        if self.insert_barrier is not None:
            try:
                self.insert_barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass
        with self.lock:
            cal = self.calendars.setdefault(cal_id, {})
            eid = body.get("id") or f"gen{len(cal)}"
            if eid in cal:
                return self._send(h, 409, _error(409, "duplicate", "The requested identifier already exists."))
            event = {**body, "id": eid, "status": "confirmed", "kind": "calendar#event",
                     "etag": f'"{time.time_ns()}"', "htmlLink": f"https://calendar.example/{eid}",
                     "iCalUID": f"{eid}@google.com"}
            cal[eid] = event
        self._send(h, 200, event)

    def _one(self, h: BaseHTTPRequestHandler, method: str, cal_id: str, eid: str, body: dict[str, Any]) -> None:
        with self.lock:
            event = self.calendars.get(cal_id, {}).get(eid)
            if event is None:
                return self._send(h, 404, _error(404, "notFound", "Not Found"))
            if method == "GET":
                return self._send(h, 200, event)
            if event.get("status") == "cancelled":
                return self._send(h, 410, _error(410, "deleted", "Resource has been deleted"))
            if method == "DELETE":
                event["status"] = "cancelled"
                return self._send(h, 204, None)
            if method == "PATCH":
                _merge(event, body)
                return self._send(h, 200, event)
        self._send(h, 405, _error(405, "methodNotAllowed", "Method not allowed"))

    def _list(self, cal_id: str, query: dict[str, str]) -> dict[str, Any]:
        items = self.events(cal_id, live_only=query.get("showDeleted") != "true")
        if "privateExtendedProperty" in query:
            key, _, value = query["privateExtendedProperty"].partition("=")
            items = [e for e in items if ((e.get("extendedProperties") or {}).get("private") or {}).get(key) == value]
        if "timeMin" in query:  # as Google: timeMin bounds an event's end, timeMax its start
            items = [e for e in items if _ts(e["end"]["dateTime"]) > _ts(query["timeMin"])]
        if "timeMax" in query:
            items = [e for e in items if _ts(e["start"]["dateTime"]) < _ts(query["timeMax"])]
        items.sort(key=lambda e: _ts(e["start"]["dateTime"]))
        if "maxResults" in query:
            items = items[:int(query["maxResults"])]
        return {"kind": "calendar#events", "items": items}
