"""Test kit for plugin authors (and the project's own tests): `http` (a fake provider HTTP
server on 127.0.0.1 that records requests and answers scripted replies), `signing` (webhook
requests signed the way providers sign them) and `contract` (the channel and connector
contract suites a plugin subclasses in its own tests). Needs pytest only for `contract`.
"""

from orchestrator.testing.http import FakeHTTPServer, Recorded, json_reply
from orchestrator.testing.signing import hmac_request, hmac_sha256, json_body, twilio_request, twilio_signature

__all__ = [
    "FakeHTTPServer", "Recorded", "hmac_request", "hmac_sha256", "json_body", "json_reply", "twilio_request",
    "twilio_signature",
]
