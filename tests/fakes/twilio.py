"""A fake Twilio REST API: Messages.create answers 201 like Twilio, Messages list (GET, To/From
filters, newest first, Twilio's page shape) answers what was created, and Basic auth is checked."""

from __future__ import annotations

import base64
import itertools
import time
from email.utils import formatdate
from typing import Any

from .http import FakeHTTPServer, Recorded, Reply, json_reply

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "test-auth-token-0123456789"


class FakeTwilio(FakeHTTPServer):
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._ids = itertools.count(1)
        self.created: list[dict[str, Any]] = []  # every message taken, as Twilio would list it
        self.calls: list[dict[str, str]] = []  # every call placed (Calls.json POST), its form
        self.deleted_recordings: list[str] = []  # RE... sids deleted (DELETE .../Recordings/{sid}.json)
        self.clock = time.time  # Twilio's clock: date_created of each message
        super().__init__(handler=self._answer)

    def _answer(self, rec: Recorded) -> Reply:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if rec.headers.get("authorization") != expected:
            return json_reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if rec.method == "POST" and rec.path == path:
            form = rec.form()
            sid = f"SM{next(self._ids):032x}"
            message = {
                "sid": sid, "account_sid": self.account_sid, "to": form["To"][0],
                "from": form.get("From", [None])[0], "body": form.get("Body", [""])[0],
                "status": "queued", "num_segments": "1", "direction": "outbound-api",
                "date_created": formatdate(self.clock(), usegmt=True), "date_sent": None,
                "api_version": "2010-04-01", "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            }
            self.created.append(message)
            return json_reply(201, message)
        if rec.method == "GET" and rec.path == path:
            found = [m for m in reversed(self.created)
                     if m["to"] == rec.query.get("To", m["to"]) and m["from"] == rec.query.get("From", m["from"])]
            size = int(rec.query.get("PageSize", "50"))
            return json_reply(200, {
                "messages": found[:size], "page": 0, "page_size": size, "start": 0, "end": min(size, len(found)) - 1,
                "first_page_uri": f"{path}?PageSize={size}&Page=0", "previous_page_uri": None,
                "next_page_uri": None, "uri": f"{path}?PageSize={size}&Page=0",
            })
        if rec.method == "POST" and rec.path == f"/2010-04-01/Accounts/{self.account_sid}/Calls.json":
            form = rec.form()
            sid = f"CA{next(self._ids):032x}"
            self.calls.append({k: v[0] for k, v in form.items()})
            return json_reply(201, {
                "sid": sid, "account_sid": self.account_sid, "to": form["To"][0], "from": form["From"][0],
                "status": "queued", "direction": "outbound-api", "api_version": "2010-04-01",
                "date_created": formatdate(self.clock(), usegmt=True),
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
            })
        recordings = f"/2010-04-01/Accounts/{self.account_sid}/Recordings/"
        if rec.method == "DELETE" and rec.path.startswith(recordings) and rec.path.endswith(".json"):
            self.deleted_recordings.append(rec.path[len(recordings):-len(".json")])
            return 204, {"Content-Type": "application/json"}, b""
        return json_reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})

    def messages(self) -> list[dict[str, list[str]]]:
        return [r.form() for r in self.requests if r.path.endswith("/Messages.json") and r.method == "POST"]
