"""AppSettings: read once from a mapping, typed, secrets hidden, missing keys named."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.settings import AppSettings


def test_defaults_without_environment() -> None:
    s = AppSettings.from_env({})
    assert s.redis_url is None and s.flows_dir == "flows" and s.key_prefix == "orch"
    assert s.redact_logs is True and s.routes() == {}
    assert s.retention_seconds == 30 * 86400


def test_values_are_typed() -> None:
    s = AppSettings.from_env({
        "ORCHESTRATOR_LOCK_TTL_SECONDS": "2.5", "ORCHESTRATOR_REDACT_LOGS": "false",
        "ORCHESTRATOR_RETENTION_DAYS": "7", "ORCHESTRATOR_OUTBOX_MAX_ATTEMPTS": "3",
    })
    assert (s.lock_ttl_seconds, s.redact_logs, s.retention_days, s.outbox_max_attempts) == (2.5, False, 7.0, 3)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("ORCHESTRATOR_LOCK_TTL_SECONDS", "soon", "expected a number, found 'soon'"),
    ("ORCHESTRATOR_REDACT_LOGS", "maybe", "expected true or false, found 'maybe'"),
    ("ORCHESTRATOR_LOCK_WAIT_SECONDS", "-1", "expected a number >= 0"),
    ("ORCHESTRATOR_ROUTES", "+1555=dental,oops", "bad entry 'oops'"),
])
def test_bad_values_name_the_key(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        AppSettings.from_env({name: value})
    assert expected in str(info.value)


def test_routes_inline_and_from_file(tmp_path: Path) -> None:
    s = AppSettings.from_env({"ORCHESTRATOR_ROUTES": "+15551230000=dental_booking, 1234567890=missed_call_textback"})
    assert s.routes() == {"+15551230000": "dental_booking", "1234567890": "missed_call_textback"}
    f = tmp_path / "routes.txt"
    f.write_text("# clinic\n+15551230000 = dental_booking\n\n99=missed_call_textback  # wa id\n")
    assert AppSettings.from_env({"ORCHESTRATOR_ROUTES": str(f)}).routes() == {
        "+15551230000": "dental_booking", "99": "missed_call_textback"}
    with pytest.raises(ConfigError, match="cannot read routes file"):
        AppSettings.from_env({"ORCHESTRATOR_ROUTES": str(tmp_path / "missing.txt")})


def test_require_names_missing_keys() -> None:
    s = AppSettings.from_env({"TWILIO_ACCOUNT_SID": "AC123"})
    s.require("TWILIO_ACCOUNT_SID")
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN, WHATSAPP_APP_SECRET are not set"):
        s.require("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "whatsapp_app_secret")
    with pytest.raises(ConfigError, match="unknown setting 'NOPE'"):
        s.require("NOPE")


def test_repr_hides_secrets() -> None:
    s = AppSettings.from_env({
        "TWILIO_AUTH_TOKEN": "tok-supersecret", "WHATSAPP_APP_SECRET": "appsecret-xyz",
        "ORCHESTRATOR_REDIS_URL": "redis://:pw-hunter2@localhost:6379/0", "TWILIO_ACCOUNT_SID": "AC999",
    })
    text = repr(s) + str(s)
    for secret in ("tok-supersecret", "appsecret-xyz", "hunter2"):
        assert secret not in text
    assert "AC999" in text and "twilio_auth_token=***" in text
    assert set(s.secrets()) == {"tok-supersecret", "appsecret-xyz", "redis://:pw-hunter2@localhost:6379/0"}
