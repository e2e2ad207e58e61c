"""Signed webhook requests as the server hands them to an adapter (`InboundRequest`), signed
the way the providers sign them: HMAC-SHA256 of the raw body (Meta, most chat widgets), and
Twilio's own `RequestValidator` over the URL and the form.

    request = hmac_request("/webhooks/webchat", body, secret, header="x-webchat-signature")
    adapter.verify(request); adapter.parse(request)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from orchestrator.plugins.channels import InboundRequest

PUBLIC_URL = "https://bot.example.com"


def hmac_sha256(secret: str | bytes, body: bytes, *, prefix: str = "sha256=") -> str:
    """`sha256=<hex HMAC-SHA256(secret, body)>`, the signature header value of Meta and most webhooks."""
    key = secret.encode() if isinstance(secret, str) else secret
    return prefix + hmac.new(key, body, hashlib.sha256).hexdigest()


def json_body(payload: Any) -> bytes:
    """Compact JSON, non-ASCII as \\uXXXX (Meta's own serialisation)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()


def hmac_request(
    path: str, body: bytes, secret: str | bytes, *, header: str = "x-hub-signature-256", method: str = "POST",
    base: str = PUBLIC_URL, content_type: str = "application/json", signature: str | None = None,
    query: dict[str, str] | None = None,
) -> InboundRequest:
    """A JSON webhook signed with HMAC-SHA256 of its body in `header` (give `signature` to forge one)."""
    sig = hmac_sha256(secret, body) if signature is None else signature
    return InboundRequest(
        method=method, url=base + path, path=path, query=dict(query or {}), body=body,
        headers={header.lower(): sig, "content-type": content_type},
    )


def twilio_signature(auth_token: str, url: str, form: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature for a form posted to `url`, computed by twilio's own RequestValidator."""
    from twilio.request_validator import RequestValidator

    params: dict[str, list[str]] = {}
    for name, value in form:
        params.setdefault(name, []).append(value)

    class _Multi(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    return str(RequestValidator(auth_token).compute_signature(url, _Multi(params)))


def twilio_request(
    auth_token: str, path: str, form: list[tuple[str, str]], *, query: str = "",
    base: str = PUBLIC_URL, signature: str | None = None,
) -> InboundRequest:
    """A Twilio form webhook as the server builds it, signed for `base + path + ?query`."""
    url = f"{base}{path}" + (f"?{query}" if query else "")
    sig = twilio_signature(auth_token, url, form) if signature is None else signature
    return InboundRequest(
        method="POST", url=url, path=path,
        headers={"x-twilio-signature": sig, "content-type": "application/x-www-form-urlencoded"},
        query=dict(parse_qsl(query)), body=urlencode(form).encode(), form=form,
    )
