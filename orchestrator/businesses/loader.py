"""`business.yaml` -> `LoadedBusiness`, checked like a flow: every problem at `file:line:col` with a
hint (the flow loader's YAML position maps), unknown keys refused, secrets only as references.

    loaded = load_business(Path("businesses/luna_hair"))        # FlowError with Diagnostics
    found, problems = load_businesses_dir(Path("businesses"))   # the good ones, and why the others not
    orchestrator validate businesses/                           # main_validate_businesses
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.businesses.schema import SECRET_PATHS, BusinessConfig
from orchestrator.businesses.secrets import is_reference
from orchestrator.errors import Diagnostic, FlowError
from orchestrator.flow import loader as flow_loader
from orchestrator.flow.loader import Position, _parse_error, did_you_mean, position_of

FILE = "business.yaml"
_FLOW_LINE = re.compile(r"""^flow:[ \t]*["']?([a-z0-9_]+)["']?[ \t]*(?:#.*)?$""", re.M)
FLOWS = "flows"


@dataclass
class LoadedBusiness:
    config: BusinessConfig
    folder: Path
    filename: str
    positions: dict[str, Position] = field(default_factory=dict)
    key_positions: dict[str, Position] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    source: str = ""

    @property
    def id(self) -> str:
        return self.config.business

    @property
    def flows_dir(self) -> Path:
        return self.folder / FLOWS

    def diagnostic(self, path: str, message: str, hint: str | None = None, *, key: bool = False,
                   severity: str = "error") -> Diagnostic:
        line, col = position_of(self.positions, self.key_positions, path, key=key)
        return Diagnostic(file=self.filename, line=line, col=col, message=message, hint=hint, path=path,
                          severity=severity)


def _positions(text: str, filename: str) -> tuple[Any, dict[str, Position], dict[str, Position]]:
    """The YAML's plain data with its value and key positions (the flow loader's walk)."""
    import yaml

    flow_loader.check_limits(text, filename)  # size, depth and alias limits, as for flows
    try:
        node = yaml.compose(text, Loader=flow_loader._Loader)
    except yaml.YAMLError as exc:
        raise FlowError([flow_loader._syntax_diagnostic(exc, filename, text)]) from None
    if node is None:
        raise FlowError([Diagnostic(file=filename, line=1, col=1, message=f"{FILE} is empty",
                                    hint="start with 'business: <folder name>'")])
    b = flow_loader._Builder(filename, text)
    data = b.build(node, ())
    if b.problems:
        raise FlowError(b.problems)  # duplicate keys and the like
    return data, b.positions, b.key_positions


def load_business_text(text: str, folder: Path, filename: str) -> LoadedBusiness:
    data, positions, key_positions = _positions(text, filename)
    if not isinstance(data, dict):
        raise FlowError([Diagnostic(file=filename, line=1, col=1, message="business.yaml must be a mapping",
                                    hint=f"start with 'business: {folder.name}'")])
    # YAML 1.1 reads an unquoted +34910000001 as a number: the text the author wrote is meant
    data = _numbers_as_text(data)
    try:
        config = msgspec.convert(data, BusinessConfig, strict=True)
    except msgspec.ValidationError as exc:
        message, segments = _parse_error(exc)
        path = "$" + "".join(s if s.startswith("[") else f".{s}" for s in segments)
        hint = None
        key = False
        if message.startswith("Object contains unknown field"):
            name = message.split("`")[1] if "`" in message else ""
            where = ".".join(seg for seg in segments if not seg.startswith("[")) or "business.yaml"
            message = f"unknown key '{name}' in {where}"
            path, key = f"{path}.{name}", True
            options = _fields_at(segments)
            hint = did_you_mean(name, options) or (f"known keys here: {', '.join(options)}" if options else None)
        elif "matching regex" in message:
            hint = _pattern_hint(segments)
        line, col = position_of(positions, key_positions, path, key=key)
        raise FlowError([Diagnostic(file=filename, line=line, col=col, message=message, hint=hint,
                                    path=path)]) from None
    loaded = LoadedBusiness(config=config, folder=folder, filename=filename, positions=positions,
                            key_positions=key_positions, source=text)
    problems = _check(loaded)
    errors = [d for d in problems if d.is_error]
    if errors:
        raise FlowError(sorted(problems, key=lambda d: (d.line, d.col)))
    loaded.warnings = problems
    return loaded


def load_business(folder: str | Path) -> LoadedBusiness:
    folder = Path(folder)
    path = folder / FILE
    filename = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError([Diagnostic(file=filename, line=1, col=1, message=f"cannot read {FILE}: "
                                    f"{exc.strerror or exc}", hint=f"each business folder holds a {FILE}")]) from None
    except UnicodeDecodeError as exc:
        raise FlowError([Diagnostic(file=filename, line=1, col=1, message=f"{FILE} is not UTF-8 ({exc.reason})",
                                    hint="save it as UTF-8")]) from None
    return load_business_text(text, folder, filename)


def business_folders(root: str | Path) -> list[Path]:
    """The business folders of a businesses directory: each sub-folder holding a business.yaml
    (folders starting with `.` or `_` are left out: drafts, backups)."""
    base = Path(root)
    if not base.is_dir():
        return []
    return [p for p in sorted(base.iterdir())
            if p.is_dir() and not p.name.startswith((".", "_")) and (p / FILE).is_file()]


def load_businesses_dir(root: str | Path) -> tuple[dict[str, LoadedBusiness], dict[str, FlowError]]:
    """Every business of the directory that loads, and the problems of those that do not (by
    folder). A number (or admin token) claimed by two businesses refuses the later one (by
    folder name), at its line: routing must never guess."""
    found: dict[str, LoadedBusiness] = {}
    problems: dict[str, FlowError] = {}
    owner_of: dict[str, str] = {}
    token_of: dict[str, str] = {}
    for folder in business_folders(root):
        try:
            loaded = load_business(folder)
        except FlowError as exc:
            problems[str(folder)] = exc
            continue
        clash: list[Diagnostic] = []
        for i, number in enumerate(loaded.config.all_numbers()):
            other = owner_of.get(number)
            if other is not None:
                kind = "twilio" if i < len(loaded.config.numbers.twilio) else "whatsapp"
                index = i if kind == "twilio" else i - len(loaded.config.numbers.twilio)
                clash.append(loaded.diagnostic(
                    f"$.numbers.{kind}[{index}]", f"the number {number} belongs to business {other!r} already",
                    "a number reaches one business; remove it from one of them"))
        for i, admin in enumerate(loaded.config.admins):
            other = token_of.get(admin.token_sha256)
            if other is not None:
                clash.append(loaded.diagnostic(
                    f"$.admins[{i}].token_sha256", f"this admin token is business {other!r}'s already",
                    "give each admin their own token (a token names one business)"))
        if clash:
            problems[str(folder)] = FlowError(clash)
            continue
        for number in loaded.config.all_numbers():
            owner_of[number] = loaded.id
        for admin in loaded.config.admins:
            token_of[admin.token_sha256] = loaded.id
        found[loaded.id] = loaded
    return found, problems


# ---- checks --------------------------------------------------------------------------------


def _check(b: LoadedBusiness) -> list[Diagnostic]:
    c = b.config
    out: list[Diagnostic] = []
    if c.business != b.folder.name:
        out.append(b.diagnostic("$.business", f"the business id {c.business!r} is not its folder's name "
                                f"{b.folder.name!r}", f"write 'business: {b.folder.name}' or rename the folder"))
    try:
        zoneinfo.ZoneInfo(c.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        out.append(b.diagnostic("$.timezone", f"unknown time zone {c.timezone!r}",
                                "use an IANA name such as Europe/Madrid or America/New_York"))
    creds: dict[str, Any] = msgspec.to_builtins(c.credentials)
    for section, name in SECRET_PATHS:
        value = (creds.get(section) or {}).get(name)
        if isinstance(value, str) and not is_reference(value):
            out.append(b.diagnostic(
                f"$.credentials.{section}.{name}", f"credentials.{section}.{name} holds a secret written out",
                f"write a reference: '{name}: env:{c.business.upper()}_{section.upper()}_{name.upper()}' "
                f"(an environment variable) or 'file:/run/secrets/...'; then rotate the secret, it was exposed"))
    if c.numbers.twilio and c.credentials.twilio is None:
        out.append(b.diagnostic("$.numbers.twilio", "Twilio numbers without credentials.twilio",
                                "add credentials.twilio: {account_sid: ..., auth_token: env:..., from: ...}",
                                key=True))
    if c.numbers.whatsapp and c.credentials.whatsapp is None:
        out.append(b.diagnostic("$.numbers.whatsapp", "WhatsApp numbers without credentials.whatsapp",
                                "add credentials.whatsapp: {token: env:..., app_secret: env:..., "
                                "verify_token: env:...}",
                                key=True))
    cal = c.credentials.calendar
    if cal.kind == "google" and not cal.calendar_id:
        out.append(b.diagnostic("$.credentials.calendar", "a google calendar needs calendar_id",
                                "add calendar_id: <the calendar's id>"))
    known = set(c.all_numbers())
    for number in c.routes:
        if number.removeprefix("whatsapp:") not in known:
            out.append(b.diagnostic(f"$.routes.{number}", f"the route {number!r} is not one of this business's "
                                    "numbers", did_you_mean(number, known) or "list it under numbers: first",
                                    key=True))
    if c.limits.conversations_per_day is not None and c.limits.conversations_per_day < 1:
        out.append(b.diagnostic("$.limits.conversations_per_day", "a limit must be at least 1",
                                "remove the limit for none"))
    if c.limits.concurrent_calls is not None and c.limits.concurrent_calls < 1:
        out.append(b.diagnostic("$.limits.concurrent_calls", "a limit must be at least 1",
                                "remove the limit for none"))
    if c.retention_days is not None and c.retention_days <= 0:
        out.append(b.diagnostic("$.retention_days", "retention_days must be more than 0",
                                "remove it to use ORCHESTRATOR_RETENTION_DAYS"))
    if not known:
        out.append(b.diagnostic("$.business", "no numbers: nothing reaches this business",
                                "add numbers: {twilio: [...], whatsapp: [...]}", severity="warning"))
    flow_ids = _flow_ids(b.flows_dir)
    wanted = [("$.default_flow", c.default_flow)] if c.default_flow else []
    wanted += [(f"$.routes.{k}", v) for k, v in c.routes.items()]
    for path, flow_id in wanted:
        if flow_id not in flow_ids:
            out.append(b.diagnostic(path, f"flow {flow_id!r} is not in {b.flows_dir}",
                                    did_you_mean(flow_id, flow_ids) or
                                    f"flows there: {', '.join(sorted(flow_ids)) or 'none'}"))
    if not c.default_flow and len(flow_ids) > 1:
        out.append(b.diagnostic("$.business", "several flows and no default_flow",
                                f"add default_flow: one of {', '.join(sorted(flow_ids))}", severity="warning"))
    return out


def _flow_ids(flows_dir: Path) -> set[str]:
    """The flow ids the flows folder declares (the top-level `flow:` of each file, else the file's
    name); a broken file is the flow validator's to report. A line scan, not a YAML parse: a
    deployment of hundreds of businesses starts without parsing every flow twice."""
    ids: set[str] = set()
    if not flows_dir.is_dir():
        return ids
    for path in sorted(flows_dir.glob("*.y*ml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            ids.add(path.stem)
            continue
        found = _FLOW_LINE.search(text)
        ids.add(found.group(1) if found else path.stem)
    return ids


def _numbers_as_text(data: dict[str, Any]) -> dict[str, Any]:
    numbers = data.get("numbers")
    if isinstance(numbers, dict):
        data = {**data, "numbers": {k: [str(v) if isinstance(v, int) else v for v in vs] if isinstance(vs, list)
                                    else vs for k, vs in numbers.items()}}
    if isinstance(data.get("routes"), dict):
        data = {**data, "routes": {str(k): v for k, v in data["routes"].items()}}
    return data


def _fields_at(segments: list[str]) -> list[str]:
    cls: Any = BusinessConfig
    for s in segments:
        if s.startswith("["):
            cls = getattr(cls, "__item__", None)
            if cls is None:
                return []
            continue
        info = {f.encode_name: f for f in msgspec.structs.fields(cls)}
        f = info.get(s)
        if f is None:
            return []
        cls = _struct_of(f.type)
        if cls is None:
            return []
    return [f.encode_name for f in msgspec.structs.fields(cls)] if cls else []


def _struct_of(tp: Any) -> Any:
    import typing

    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    for arg in typing.get_args(tp):
        found = _struct_of(arg)
        if found is not None:
            if typing.get_origin(tp) in (list, tuple):
                return type("ListOf", (), {"__item__": found})
            return found
    return None


def _pattern_hint(segments: list[str]) -> str | None:
    where = ".".join(s for s in segments if not s.startswith("["))
    if where.startswith("numbers.twilio") or where == "staff_number":
        return "write the number in E.164, quoted: \"+34910000001\""
    if where.startswith("numbers.whatsapp"):
        return "the WhatsApp phone-number id is digits (Meta's app dashboard), e.g. \"109876543210001\""
    if where.startswith("admins") and "token_sha256" in where:
        return "64 lowercase hex digits: python3 -c \"import hashlib;print(hashlib.sha256(b'TOKEN').hexdigest())\""
    if where == "business":
        return "ids are [a-z0-9_]+, the folder's name"
    return None
