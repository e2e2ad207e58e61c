"""A fake WhatsApp Cloud API (Graph): POST /{version}/{phone-number-id}/messages answers
like Meta (200 with a wamid), checks the bearer token, and records every payload. `taken`
holds each message Meta accepted with its wamid, and `status_of(wamid)` builds the status
webhook item Meta would send for it (echoing `biz_opaque_callback_data`)."""

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
        self.taken: list[tuple[str, dict]] = []  # type: ignore[type-arg]  # (wamid, payload) accepted
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
        wamid = f"wamid.FAKE{next(self._ids):08d}"
        self.taken.append((wamid, payload))
        return json_reply(200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                "messages": [{"id": wamid}]})

    def status_of(self, wamid: str, status: str = "sent") -> dict:  # type: ignore[type-arg]
        """The `statuses[]` item Meta posts for a message it took."""
        payload = dict(self.taken)[wamid]
        item = {"id": wamid, "status": status, "timestamp": "1764072100", "recipient_id": payload.get("to", "")}
        if "biz_opaque_callback_data" in payload:
            item["biz_opaque_callback_data"] = payload["biz_opaque_callback_data"]
        return item

    def sent(self) -> list[dict]:  # type: ignore[type-arg]
        return [r.json() for r in self.requests if _MESSAGES.match(r.path) and r.method == "POST"]
