"""Structured JSON logs with a correlation id per turn, phone numbers and secrets redacted.

    from orchestrator.logs import configure_logging, correlation, redact_phone
    configure_logging(json=True, redact=True)
    with correlation("turn-id"):
        log.info("turn applied", extra={"session": redact_phone(session_id)})

Redaction runs in a logging.Filter on every record, so a careless `%s` of a phone number
or a message body in any module is still masked: E.164-like numbers keep their last two
digits (`+1******99`), registered secrets are replaced by `[secret]`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json as _json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
_PHONE = re.compile(
    r"(\+\d{7,15}(?!\d)"  # E.164
    r"|\(\d{3}\)\s?\d{3}-\d{4}"  # (555) 555-0199
    r"|(?<!\d)\d{3}[-.]\d{3}[-.]\d{4}(?!\d)"  # 555-555-0199
    r"|(?<![\d.])\d{10,15}(?![\d.]))"  # WhatsApp wa_id and bare national numbers
)
_secrets: set[str] = set()
_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def redact_phone(text: str) -> str:
    """Mask phone-number-like digit runs, keeping the last two digits: '+15555550123' -> '+1*******23'."""

    def mask(match: re.Match[str]) -> str:
        raw = match.group(1)
        keep_head = 2 if raw.startswith("+") else 0
        out = raw[:keep_head] + "*" * (len(raw) - keep_head - 2) + raw[-2:]
        return out

    return _PHONE.sub(mask, text)


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never appear in a log line (tokens, app secrets). Short ones are ignored."""
    _secrets.update(v for v in values if v and len(v) >= 6)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "[secret]")
    return redact_phone(text)


def correlation_id() -> str | None:
    return _correlation.get()


def _loggable_id(value: str) -> str:
    """A provider's message id as a log correlation id. A WhatsApp `wamid.` is base64 of a
    payload holding the contact's number, so it is logged as a digest of itself: the same
    delivery (and its retries, on any process) still share one id, and no number can be read
    from it (the wamid's random part makes the digest no lookup table of numbers)."""
    if value.startswith("wamid."):
        return "wa-" + hashlib.blake2b(value.encode(), digest_size=8).hexdigest()
    return value


@contextlib.contextmanager
def correlation(value: str | None = None) -> Iterator[str]:
    """Bind a correlation id to every log line written inside the block."""
    cid = _loggable_id(value) if value else uuid.uuid4().hex[:16]
    token = _correlation.set(cid)
    try:
        yield cid
    finally:
        _correlation.reset(token)


class RedactingFilter(logging.Filter):
    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation.get()
        if self.enabled:
            message = record.getMessage()
            record.msg = redact(message)
            record.args = None
            for key, value in list(vars(record).items()):
                if key not in _STANDARD and isinstance(value, str):
                    setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = getattr(record, "correlation_id", None)
        if cid:
            payload["cid"] = cid
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "correlation_id" and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return _json.dumps(payload, default=str)


class ArgsRedactingFilter(logging.Filter):
    """Redacts a record's string arguments in place, keeping them a tuple: for loggers whose
    formatter unpacks `record.args` (uvicorn's access log: client, method, path + query, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


ACCESS_LOGGERS = ("uvicorn.access", "granian.access")
# Libraries that log every request at INFO (twilio's REST client: method, URL, headers; then the
# answer's status): alone they were most of a busy server's lines. Kept to warnings and errors
# unless a level was set for them explicitly.
CHATTY_LOGGERS = ("twilio.http_client", "httpx", "httpcore", "urllib3", "googleapiclient.discovery",
                  "googleapiclient.discovery_cache", "google.auth.transport", "heyoo")


def ensure_logging(*, redact: bool = True, level: int | str = logging.INFO) -> None:
    """`configure_logging` unless it ran already in this process (idempotent), and redaction
    on the web servers' access loggers whatever handler they write to. Called by the app
    factory, so every uvicorn worker process (`serve --workers N`) logs redacted too."""
    root = logging.getLogger()
    if not any(getattr(h, "_orchestrator", False) for h in root.handlers):
        configure_logging(json=True, redact=redact, level=level)
    if redact:
        for name in ACCESS_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, ArgsRedactingFilter) for f in logger.filters):
                logger.addFilter(ArgsRedactingFilter())


def configure_logging(*, json: bool = True, redact: bool = True, level: int | str = logging.INFO) -> None:
    """Install one handler on the root logger (idempotent), JSON lines on stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_orchestrator", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._orchestrator = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter(enabled=redact))
    handler.setFormatter(JsonFormatter() if json else logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries()
    logging.Formatter.converter = time.gmtime


def quiet_libraries(level: int = logging.WARNING) -> None:
    """CHATTY_LOGGERS at `level`, except one given a level of its own (logger.setLevel) already."""
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
