"""Sign test webhooks the way the providers do: Twilio with its own RequestValidator,
Meta with HMAC-SHA256 of the raw body."""

from __future__ import annotations

from typing import Any

from orchestrator.plugins.channels import InboundRequest
from orchestrator.testing.signing import PUBLIC_URL, hmac_sha256, json_body, twilio_request, twilio_signature

__all__ = ["PUBLIC_URL", "twilio_request", "twilio_signature"]

APP_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "verify-token-abc123"


def meta_signature(body: bytes, secret: str = APP_SECRET) -> str:
    return hmac_sha256(secret, body)


def meta_body(payload: Any) -> bytes:
    """Meta's own serialisation: compact, non-ASCII as \\uXXXX."""
    return json_body(payload)


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
