"""The app factory configures redacted logging itself: under `serve --workers N` uvicorn builds
the app in each worker by `create_app` alone, so that is where redaction must be switched on.
The webhook path answers from a raw ASGI handler (no litestar Request/DI); its edge cases
(405, 413, Retry-After) keep their answers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.signing import APP_SECRET, VERIFY_TOKEN
from litestar.testing import AsyncTestClient

from orchestrator.logs import ArgsRedactingFilter, ensure_logging
from orchestrator.settings import AppSettings
from orchestrator.web.app import MAX_BODY_BYTES, create_app

PHONE = "+15555550123"


@pytest.fixture
def fresh_root() -> Iterator[logging.Logger]:
    """The root logger without our handler (as in a freshly spawned uvicorn worker), restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    root.handlers = [h for h in root.handlers if not getattr(h, "_orchestrator", False)]
    yield root
    root.handlers = saved_handlers
    root.setLevel(saved_level)


def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(
        flows_dir=str(tmp_path), public_url="https://bot.example.com",
        twilio_account_sid="AC" + "0" * 32, twilio_auth_token="test-auth-token-0123456789",
        twilio_from_number="+15555550100", whatsapp_token="wa-token-0123456789",
        whatsapp_phone_number_id="106540352242922", whatsapp_app_secret=APP_SECRET,
        whatsapp_verify_token=VERIFY_TOKEN,
    )


def our_handler(root: logging.Logger) -> logging.Handler:
    [handler] = [h for h in root.handlers if getattr(h, "_orchestrator", False)]
    return handler


def test_create_app_installs_redacting_json_logging_once(tmp_path: Path, fresh_root: logging.Logger) -> None:
    create_app(settings(tmp_path), start_background=False)
    create_app(settings(tmp_path), start_background=False)  # idempotent: still one handler
    handler = our_handler(fresh_root)
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("orchestrator.test").warning("reply to %s failed", PHONE, extra={"contact": PHONE})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert PHONE not in stream.getvalue()
    assert line["msg"] == "reply to +1********23 failed" and line["contact"].endswith("23")


def test_litestar_does_not_install_its_own_unredacted_logging(tmp_path: Path, fresh_root: logging.Logger) -> None:
    app = create_app(settings(tmp_path), start_background=False)
    assert app.logging_config is None
    assert [h for h in fresh_root.handlers if "queue" in type(h).__name__.lower()] == []


def test_access_log_arguments_are_redacted_and_stay_a_tuple(fresh_root: logging.Logger) -> None:
    ensure_logging(redact=True)
    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, ArgsRedactingFilter) for f in access.filters)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/webhooks/whatsapp?from={PHONE}", "1.1", 200), None)
    assert access.filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5
    assert PHONE not in record.getMessage() and "/webhooks/whatsapp?from=+1" in record.getMessage()


async def test_raw_webhook_handler_edges(tmp_path: Path, fresh_root: logging.Logger) -> None:
    async with AsyncTestClient(create_app(settings(tmp_path), start_background=False)) as client:
        wrong_method = await client.put("/webhooks/twilio/sms", content=b"x")
        assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
        big = await client.post("/webhooks/twilio/sms", content=b"x" * (MAX_BODY_BYTES + 1),
                                headers={"content-type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        unsigned = await client.post("/webhooks/twilio/sms", content=b"From=%2B15555550123&Body=hi",
                                     headers={"content-type": "application/x-www-form-urlencoded"})
        assert unsigned.status_code == 403 and unsigned.content == b"forbidden"
        assert unsigned.headers["content-type"].startswith("text/plain")
