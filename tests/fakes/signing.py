"""Sign test webhooks the way the providers do: Twilio with its own RequestValidator,
Meta with HMAC-SHA256 of the raw body."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from orchestrator.plugins.channels import InboundRequest

PUBLIC_URL = "https://bot.example.com"
APP_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "verify-token-abc123"


def twilio_signature(auth_token: str, url: str, form: list[tuple[str, str]]) -> str:
    params: dict[str, list[str]] = {}
    for name, value in form:
        params.setdefault(name, []).append(value)

    class _Multi(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    return RequestValidator(auth_token).compute_signature(url, _Multi(params))


def twilio_request(
    auth_token: str, path: str, form: list[tuple[str, str]], *, query: str = "",
    base: str = PUBLIC_URL, signature: str | None = None,
) -> InboundRequest:
    """An InboundRequest as the server builds it, signed for `base + path + ?query`."""
    url = f"{base}{path}" + (f"?{query}" if query else "")
    sig = twilio_signature(auth_token, url, form) if signature is None else signature
    from urllib.parse import parse_qsl

    return InboundRequest(
        method="POST", url=url, path=path,
        headers={"x-twilio-signature": sig, "content-type": "application/x-www-form-urlencoded"},
        query=dict(parse_qsl(query)), body=urlencode(form).encode(), form=form,
    )


def meta_signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def meta_body(payload: Any) -> bytes:
    """Meta's own serialisation: compact, non-ASCII as \\uXXXX."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()


def whatsapp_request(payload: Any, *, secret: str = APP_SECRET, body: bytes | None = None) -> InboundRequest:
    raw = meta_body(payload) if body is None else body
    return InboundRequest(
        method="POST", url=f"{PUBLIC_URL}/webhooks/whatsapp", path="/webhooks/whatsapp",
        headers={"x-hub-signature-256": meta_signature(raw, secret), "content-type": "application/json"},
        query={}, body=raw,
    )


# ---- payloads in the providers' real shapes ----------------------------------------------------

ACCOUNT = "AC" + "0" * 31 + "1"
CALL_SID = "CA" + "a1" * 16
CLINIC = "+15555550100"
CALLER = "+15555550123"


def voice_form(call_sid: str = CALL_SID, status: str = "ringing", **extra: str) -> list[tuple[str, str]]:
    form = [
        ("AccountSid", ACCOUNT), ("ApiVersion", "2010-04-01"), ("CallSid", call_sid), ("CallStatus", status),
        ("Called", CLINIC), ("CalledCity", ""), ("CalledCountry", "US"), ("CalledState", "NY"), ("CalledZip", ""),
        ("Caller", CALLER), ("CallerCity", "NEW YORK"), ("CallerCountry", "US"), ("CallerState", "NY"),
        ("CallerZip", "10001"), ("Direction", "inbound"), ("From", CALLER), ("FromCity", "NEW YORK"),
        ("FromCountry", "US"), ("FromState", "NY"), ("FromZip", "10001"), ("To", CLINIC), ("ToCity", ""),
        ("ToCountry", "US"), ("ToState", "NY"), ("ToZip", ""),
    ]
    return form + list(extra.items())


def sms_form(body: str, sid: str = "SM" + "b2" * 16, sender: str = CALLER, to: str = CLINIC,
             **extra: str) -> list[tuple[str, str]]:
    form = [
        ("ToCountry", "US"), ("ToState", "NY"), ("SmsMessageSid", sid), ("NumMedia", "0"), ("ToCity", ""),
        ("FromZip", "10001"), ("SmsSid", sid), ("FromState", "NY"), ("SmsStatus", "received"),
        ("FromCity", "NEW YORK"), ("Body", body), ("FromCountry", "US"), ("To", to),
        ("MessagingServiceSid", "MG" + "c3" * 16), ("ToZip", ""), ("NumSegments", "1"), ("MessageSid", sid),
        ("AccountSid", ACCOUNT), ("From", sender), ("ApiVersion", "2010-04-01"),
    ]
    return form + list(extra.items())


WABA_ID = "102290129340398"
WA_PHONE_ID = "106540352242922"
WA_USER = "16315551181"


def wa_envelope(*values: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [
        {"id": WABA_ID, "changes": [{"field": "messages", "value": v} for v in values]} for _ in range(entries)
    ]}


def wa_value(messages: list[dict[str, Any]] | None = None, statuses: list[dict[str, Any]] | None = None,
             contacts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": WA_PHONE_ID},
    }
    if messages is not None:
        value["contacts"] = contacts if contacts is not None else [
            {"profile": {"name": "Kerry Fisher"}, "wa_id": WA_USER}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return value


def wa_text(body: str, wamid: str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUZCNTI0", sender: str = WA_USER
            ) -> dict[str, Any]:
    return {"from": sender, "id": wamid, "timestamp": "1764072000", "type": "text", "text": {"body": body}}
