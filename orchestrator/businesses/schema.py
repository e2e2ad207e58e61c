"""`business.yaml` as msgspec Structs: one folder per business under ORCHESTRATOR_BUSINESSES_DIR.

Unknown keys are refused (a typo never silently drops a setting). Secrets are references
(`env:NAME`, `file:/path`), checked by `loader`; resolved by `secrets`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Identifier = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,64}$")]
Phone = Annotated[str, msgspec.Meta(pattern=r"^(whatsapp:)?\+[1-9]\d{6,14}$")]
PhoneNumberId = Annotated[str, msgspec.Meta(pattern=r"^\d{5,20}$")]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Numbers(Base):
    twilio: tuple[Phone, ...] = ()  # voice and SMS numbers (the `To` of Twilio's webhooks)
    whatsapp: tuple[PhoneNumberId, ...] = ()  # WhatsApp Cloud API phone-number ids


class TwilioCredentials(Base):
    account_sid: str  # a reference or the SID itself (not a secret)
    auth_token: str  # a reference only
    from_: str | None = msgspec.field(default=None, name="from")  # the number outbound messages go from


class WhatsAppCredentials(Base):
    token: str
    app_secret: str
    verify_token: str


class CalendarCredentials(Base):
    kind: Literal["embedded", "google"] = "embedded"
    calendar_id: str | None = None  # google
    credentials: str | None = None  # google: a service-account file, `file:/path`


class Credentials(Base):
    twilio: TwilioCredentials | None = None
    whatsapp: WhatsAppCredentials | None = None
    calendar: CalendarCredentials = msgspec.field(default_factory=CalendarCredentials)


class Admin(Base):
    name: str
    token_sha256: Sha256  # hashlib.sha256(token.encode()).hexdigest()
    role: Literal["owner", "staff"]


class Limits(Base):
    conversations_per_day: int | None = None  # new conversations a day (the business's timezone)
    concurrent_calls: int | None = None  # voice calls in progress at once; past it a busy message


class BusinessConfig(Base):
    business: Identifier
    name: str | None = None
    timezone: str = "UTC"
    numbers: Numbers = msgspec.field(default_factory=Numbers)
    default_flow: str | None = None
    routes: dict[str, str] = {}  # number / phone-number id -> flow id
    credentials: Credentials = msgspec.field(default_factory=Credentials)
    admins: tuple[Admin, ...] = ()
    retention_days: float | None = None  # unset: ORCHESTRATOR_RETENTION_DAYS
    limits: Limits = msgspec.field(default_factory=Limits)
    staff_number: Phone | None = None  # told (SMS) when a limit is reached, once a day

    def all_numbers(self) -> list[str]:
        return [n.removeprefix("whatsapp:") for n in self.numbers.twilio] + list(self.numbers.whatsapp)


# (path in the YAML, value) of every field that holds a secret: a reference only
SECRET_PATHS: tuple[tuple[str, ...], ...] = (
    ("twilio", "auth_token"), ("whatsapp", "token"), ("whatsapp", "app_secret"), ("whatsapp", "verify_token"),
    ("calendar", "credentials"),
)
