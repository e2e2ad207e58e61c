"""A fake Twilio REST API: Messages.create answers 201 like Twilio, and checks Basic auth."""

from __future__ import annotations

import base64
import itertools

from .http import FakeHTTPServer, Recorded, Reply, json_reply

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "test-auth-token-0123456789"


class FakeTwilio(FakeHTTPServer):
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._ids = itertools.count(1)
        super().__init__(handler=self._answer)

    def _answer(self, rec: Recorded) -> Reply:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if rec.headers.get("authorization") != expected:
            return json_reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        if rec.method == "POST" and rec.path == f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            form = rec.form()
            sid = f"SM{next(self._ids):032x}"
            return json_reply(201, {
                "sid": sid, "account_sid": self.account_sid, "to": form["To"][0],
                "from": form.get("From", [None])[0], "body": form.get("Body", [""])[0],
                "status": "queued", "num_segments": "1", "direction": "outbound-api",
                "api_version": "2010-04-01", "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            })
        return json_reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})

    def messages(self) -> list[dict[str, list[str]]]:
        return [r.form() for r in self.requests if r.path.endswith("/Messages.json")]
