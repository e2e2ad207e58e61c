"""A fake WhatsApp Cloud API (Graph): POST /{version}/{phone-number-id}/messages answers
like Meta (200 with a wamid), checks the bearer token, and records every payload."""

from __future__ import annotations

import itertools
import re

from .http import FakeHTTPServer, Recorded, Reply, json_reply

WA_TOKEN = "EAAG-test-token-abcdef"
PHONE_NUMBER_ID = "106540352242922"
_MESSAGES = re.compile(r"^/(v\d+\.\d+)/(\d+)/messages$")


class FakeGraph(FakeHTTPServer):
    def __init__(self, token: str = WA_TOKEN) -> None:
        self.token = token
        self._ids = itertools.count(1)
        super().__init__(handler=self._answer)

    def _answer(self, rec: Recorded) -> Reply:
        if rec.headers.get("authorization") != f"Bearer {self.token}":
            return json_reply(401, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException",
                                              "code": 190, "fbtrace_id": "A1"}})
        match = _MESSAGES.match(rec.path)
        if rec.method != "POST" or not match:
            return json_reply(400, {"error": {"message": "Unsupported post request.", "type": "GraphMethodException",
                                              "code": 100, "fbtrace_id": "A2"}})
        payload = rec.json()
        if payload.get("status") == "read":
            return json_reply(200, {"success": True})
        to = payload.get("to", "")
        return json_reply(200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                "messages": [{"id": f"wamid.FAKE{next(self._ids):08d}"}]})

    def sent(self) -> list[dict]:  # type: ignore[type-arg]
        return [r.json() for r in self.requests if _MESSAGES.match(r.path) and r.method == "POST"]
