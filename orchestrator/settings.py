"""One typed `AppSettings` Struct, read from the environment once at start-up.

    settings = AppSettings.from_env()          # never at import time
    settings.require("TWILIO_AUTH_TOKEN")      # ConfigError naming the missing key

Units are in the names (`lock_ttl_seconds`). Secrets never show in `repr()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.errors import ConfigError

# environment name -> (field name, is secret)
ENV_FIELDS: dict[str, tuple[str, bool]] = {
    "ORCHESTRATOR_REDIS_URL": ("redis_url", True),  # may carry a password
    "ORCHESTRATOR_FLOWS_DIR": ("flows_dir", False),
    "ORCHESTRATOR_DEFAULT_FLOW": ("default_flow", False),
    "ORCHESTRATOR_PUBLIC_URL": ("public_url", False),
    "ORCHESTRATOR_ADMIN_TOKEN": ("admin_token", True),
    "ORCHESTRATOR_TRUST_PROXY_HEADERS": ("trust_proxy_headers", False),
    "ORCHESTRATOR_AUDIT_KEY": ("audit_key", True),
    "ORCHESTRATOR_ROUTES": ("routes_spec", False),
    "ORCHESTRATOR_KEY_PREFIX": ("key_prefix", False),
    "ORCHESTRATOR_RETENTION_DAYS": ("retention_days", False),
    "ORCHESTRATOR_LOCK_TTL_SECONDS": ("lock_ttl_seconds", False),
    "ORCHESTRATOR_LOCK_WAIT_SECONDS": ("lock_wait_seconds", False),
    "ORCHESTRATOR_REDACT_LOGS": ("redact_logs", False),
    "ORCHESTRATOR_REDIS_TIMEOUT_SECONDS": ("redis_timeout_seconds", False),
    "ORCHESTRATOR_REDIS_WAIT_REPLICAS": ("redis_wait_replicas", False),
    "ORCHESTRATOR_TIMER_POLL_SECONDS": ("timer_poll_seconds", False),
    "ORCHESTRATOR_OUTBOX_LEASE_SECONDS": ("outbox_lease_seconds", False),
    "ORCHESTRATOR_OUTBOX_MAX_ATTEMPTS": ("outbox_max_attempts", False),
    "ORCHESTRATOR_OUTBOX_GIVE_UP_SECONDS": ("outbox_give_up_seconds", False),
    "ORCHESTRATOR_OUTBOX_BACKOFF_CAP_SECONDS": ("outbox_backoff_cap_seconds", False),
    "ORCHESTRATOR_OUTBOX_CONCURRENCY": ("outbox_concurrency", False),
    "ORCHESTRATOR_OUTBOX_RECONCILE_SECONDS": ("outbox_reconcile_seconds", False),
    "ORCHESTRATOR_DEDUPE_TTL_SECONDS": ("dedupe_ttl_seconds", False),
    "ORCHESTRATOR_HELP_TEXT": ("help_text", False),
    "ORCHESTRATOR_MISSED_CALL_FLOW": ("missed_call_flow", False),
    "ORCHESTRATOR_RELOAD_SECONDS": ("reload_seconds", False),
    "ORCHESTRATOR_RETENTION_INTERVAL_SECONDS": ("retention_interval_seconds", False),
    "ORCHESTRATOR_UNDERSTAND": ("understand", False),
    "ORCHESTRATOR_UNDERSTAND_MODEL": ("understand_model", False),
    "ORCHESTRATOR_UNDERSTAND_TIMEOUT_MS": ("understand_timeout_ms", False),
    "OPENAI_BASE_URL": ("openai_base_url", False),
    "OPENAI_API_KEY": ("openai_api_key", True),
    "TWILIO_ACCOUNT_SID": ("twilio_account_sid", False),
    "TWILIO_AUTH_TOKEN": ("twilio_auth_token", True),
    "TWILIO_FROM_NUMBER": ("twilio_from_number", False),
    "TWILIO_API_BASE": ("twilio_api_base", False),
    "WHATSAPP_TOKEN": ("whatsapp_token", True),
    "WHATSAPP_PHONE_NUMBER_ID": ("whatsapp_phone_number_id", False),
    "WHATSAPP_APP_SECRET": ("whatsapp_app_secret", True),
    "WHATSAPP_VERIFY_TOKEN": ("whatsapp_verify_token", True),
    "WHATSAPP_API_BASE": ("whatsapp_api_base", False),
    "GOOGLE_APPLICATION_CREDENTIALS": ("google_application_credentials", False),
    "GOOGLE_CALENDAR_ID": ("google_calendar_id", False),
    "GOOGLE_API_BASE": ("google_api_base", False),
}
_FIELD_TO_ENV = {field: env for env, (field, _) in ENV_FIELDS.items()}
SECRET_FIELDS = frozenset(field for field, secret in ENV_FIELDS.values() if secret)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class AppSettings(msgspec.Struct, kw_only=True, frozen=True, repr_omit_defaults=True):
    redis_url: str | None = None  # unset: in-memory store (one process)
    flows_dir: str = "flows"
    default_flow: str | None = None
    public_url: str | None = None
    admin_token: str | None = None
    # without public_url: rebuild the signed URL from each request's Host / X-Forwarded-* (only
    # behind a proxy that sets them); off, Twilio webhooks refuse to start without public_url
    trust_proxy_headers: bool = False
    audit_key: str | None = None  # keys the audit log's contact hashes; unset: derived from admin_token
    routes_spec: str | None = None  # "+15551230000=dental_booking,123=missed_call_textback" or a file
    key_prefix: str = "orch"
    retention_days: float = 30.0
    lock_ttl_seconds: float = 10.0
    lock_wait_seconds: float = 5.0
    redact_logs: bool = True
    redis_timeout_seconds: float = 1.0
    redis_wait_replicas: int = 0  # > 0: each commit is followed by WAIT <n> (Sentinel / replicas; docs/ARCHITECTURE.md)
    timer_poll_seconds: float = 1.0
    outbox_lease_seconds: float = 30.0
    outbox_max_attempts: int = 0  # deprecated cap on attempts; 0 = none: outbox_give_up_seconds decides
    outbox_give_up_seconds: float = 86400.0  # a message still unsent this long after its turn is given up
    outbox_backoff_cap_seconds: float = 300.0  # retries back off 2, 4, 8 ... s up to this
    outbox_concurrency: int = 8  # sends in flight per channel adapter (one at a time per contact)
    outbox_reconcile_seconds: float = 30.0  # an unknown send outcome waits this long for its status webhook
    dedupe_ttl_seconds: int = 172_800  # 48 h: longer than any provider's retry window that matters
    help_text: str | None = None  # HELP answer for flows without settings.help_text; unset: one naming the business
    missed_call_flow: str | None = None  # flow texted after an unanswered call; unset: missed_call_textback if loaded
    reload_seconds: float = 2.0  # poll the flows directory for edits; 0 = off
    retention_interval_seconds: float = 3600.0  # how often the retention job runs; 0 = off
    understand: str = "rules"  # rules (no network) | openai: a language model parses what the rules did not
    understand_model: str | None = None
    understand_timeout_ms: float = 1500.0  # past it the rules' answer stands
    openai_base_url: str | None = None  # any OpenAI-compatible server; unset: api.openai.com
    openai_api_key: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_api_base: str | None = None
    whatsapp_token: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_app_secret: str | None = None
    whatsapp_verify_token: str | None = None
    whatsapp_api_base: str | None = None
    google_application_credentials: str | None = None
    google_calendar_id: str | None = None
    google_api_base: str | None = None
    # the whole environment read by `from_env`: plugins read their own settings from it
    environ: dict[str, str] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        """Read every known name from `env` (default `os.environ`); ConfigError names a bad value."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, (field, _) in ENV_FIELDS.items():
            raw = source.get(name)
            if raw is None or (raw.strip() == "" and field != "redact_logs"):
                continue
            values[field] = _convert(name, field, raw.strip())
        settings = cls(**values, environ=dict(source))
        settings.routes()  # fail fast on a malformed routing table
        return settings

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every missing setting (environment names or field names)."""
        missing = []
        for name in names:
            field = ENV_FIELDS[name][0] if name in ENV_FIELDS else name
            if not hasattr(self, field):
                raise ConfigError(f"settings: unknown setting {name!r}; known: {', '.join(ENV_FIELDS)}")
            if getattr(self, field) in (None, ""):
                missing.append(_FIELD_TO_ENV.get(field, name))
        if missing:
            raise ConfigError(
                f"settings: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
                "set it in the environment before starting the server"
            )

    def routes(self) -> dict[str, str]:
        """The routing table: route key (number called, WhatsApp phone-number id) -> flow id.

        `ORCHESTRATOR_ROUTES` holds `key=flow` pairs separated by commas or new lines, or
        the path of a file holding them (`#` comments allowed)."""
        spec = self.routes_spec
        if not spec:
            return {}
        text = spec
        if "=" not in spec:
            path = Path(spec)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"ORCHESTRATOR_ROUTES: cannot read routes file {spec!r} ({exc.strerror}); "
                    "give 'number=flow_id,...' or an existing file"
                ) from None
        table: dict[str, str] = {}
        for raw in text.replace(",", "\n").splitlines():
            item = raw.split("#", 1)[0].strip()
            if not item:
                continue
            key, sep, flow = (part.strip() for part in item.partition("="))
            if not sep or not key or not flow:
                raise ConfigError(
                    f"ORCHESTRATOR_ROUTES: bad entry {item!r}; write 'number=flow_id', "
                    "e.g. '+15551230000=dental_booking'"
                )
            table[key] = flow
        return table

    @property
    def retention_seconds(self) -> int:
        return int(self.retention_days * 86400)

    def plugin_environ(self) -> dict[str, str]:
        """What plugins read their settings from: the environment `from_env` read, with every
        setting of this Struct under its environment name (a Struct built in code counts too)."""
        out = dict(self.environ)
        for name, (field, _) in ENV_FIELDS.items():
            value = getattr(self, field)
            if value is None:
                out.pop(name, None)
            else:
                out[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return out

    def secrets(self) -> list[str]:
        """Values that must never be logged (for `logs.register_secrets`)."""
        return [v for f in sorted(SECRET_FIELDS) if isinstance(v := getattr(self, f), str) and v]

    def __repr__(self) -> str:
        shown = []
        for field in self.__struct_fields__:
            value = getattr(self, field)
            if value is None or field == "environ":
                continue
            shown.append(f"{field}={'***' if field in SECRET_FIELDS else repr(value)}")
        return f"AppSettings({', '.join(shown)})"

    __str__ = __repr__


def _convert(name: str, field: str, raw: str) -> Any:
    kind = AppSettings.__annotations__[field]
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{name}: expected true or false, found {raw!r}")
    if kind in ("int", "float"):
        try:
            number = int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, found {raw!r}") from None
        if number < 0:
            raise ConfigError(f"{name}: expected a number >= 0, found {raw!r}")
        return number
    return raw
