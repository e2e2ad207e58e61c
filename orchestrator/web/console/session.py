"""The console's sign-in session: a signed, short-lived cookie holding its expiry and CSRF token.

    value = issue(settings, now)              # after the admin token was given
    session = read(settings, value, now)      # None when missing, forged, expired, or the token changed

Nothing is kept server-side: the signature key is derived from ORCHESTRATOR_ADMIN_TOKEN, so
changing the token signs every console session out. The cookie never holds the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import msgspec

from orchestrator.settings import AppSettings

COOKIE = "console_session"
SESSION_SECONDS = 30 * 60
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


class ConsoleSession(msgspec.Struct, kw_only=True, omit_defaults=True):
    exp: int  # epoch seconds
    csrf: str
    # many businesses (docs/SPEC.md §10): who signed in (`operator`, `owner`, `staff`), their name,
    # and the business the pages show (the admin's own; the operator's pick)
    role: str = ""
    admin: str = ""
    business: str = ""


_PROCESS_SECRET = secrets.token_bytes(32)  # many businesses and no operator token: sessions of this process


def enabled(settings: AppSettings) -> bool:
    """Whether anyone can sign in: the operator token is set, or businesses have admins."""
    return bool(settings.admin_token or settings.businesses_dir)


def _key(settings: AppSettings) -> bytes:
    secret = (settings.admin_token or "").encode()
    if not secret and settings.businesses_dir:
        secret = (settings.audit_key or "").encode() or _PROCESS_SECRET
    return hmac.new(secret, b"orchestrator console session v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_matches(given: str, settings: AppSettings) -> bool:
    expected = settings.admin_token
    return bool(expected and given) and hmac.compare_digest(given.strip().encode(), (expected or "").encode())


def issue(settings: AppSettings, now: float, *, role: str = "", admin: str = "", business: str = "",
          csrf: str | None = None) -> str:
    payload = msgspec.json.encode(ConsoleSession(exp=int(now) + SESSION_SECONDS, csrf=csrf or secrets.token_urlsafe(24),
                                                 role=role, admin=admin, business=business))
    sig = hmac.new(_key(settings), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(sig)}"


def read(settings: AppSettings, value: str | None, now: float) -> ConsoleSession | None:
    if not value or not enabled(settings) or value.count(".") != 1:
        return None
    body, _, sig = value.partition(".")
    try:
        payload, given = _unb64(body), _unb64(sig)
    except ValueError:
        return None
    if not hmac.compare_digest(hmac.new(_key(settings), payload, hashlib.sha256).digest(), given):
        return None
    try:
        session = msgspec.json.decode(payload, type=ConsoleSession)
    except msgspec.DecodeError:
        return None
    return session if session.exp > now else None


def csrf_ok(session: ConsoleSession, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())


# Conversation ids name the contact (`<business>:<contact>~<ms>`); the console's links carry them
# sealed (deterministic authenticated encryption: an HMAC-SHA256 synthetic IV, then an
# HMAC-SHA256 counter keystream), so no phone number lands in a URL, a browser's history or a
# proxy's access log. Sealed with the session key: a changed admin token voids old links too.

_IV = 12


def _stream(key: bytes, iv: bytes, size: int) -> bytes:
    blocks = (hmac.new(key, iv + n.to_bytes(4, "big"), hashlib.sha256).digest() for n in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def seal(settings: AppSettings, text: str) -> str:
    key = _key(settings)
    plain = text.encode()
    iv = hmac.new(key, b"iv" + plain, hashlib.sha256).digest()[:_IV]
    return _b64(iv + bytes(a ^ b for a, b in zip(plain, _stream(key, iv, len(plain)), strict=True)))


def unseal(settings: AppSettings, ref: str) -> str | None:
    key = _key(settings)
    try:
        raw = _unb64(ref)
    except ValueError:
        return None
    iv, body = raw[:_IV], raw[_IV:]
    plain = bytes(a ^ b for a, b in zip(body, _stream(key, iv, len(body)), strict=True))
    if len(iv) != _IV or not hmac.compare_digest(hmac.new(key, b"iv" + plain, hashlib.sha256).digest()[:_IV], iv):
        return None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        return None
