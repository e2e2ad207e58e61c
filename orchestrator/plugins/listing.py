"""`orchestrator plugins`: what is installed, its settings and whether it is configured.

Secrets are shown as set or unset, never their value; other settings show their value or
default. Exit 1 when a plugin fails to import or to configure, or two share a name (what
`serve` would refuse), so CI can run it as a check."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import msgspec

from orchestrator.errors import ConfigError
from orchestrator.plugins.base import PREFER_ENV, Installed, configure, discover, parse_prefer
from orchestrator.plugins.channels import ENTRY_POINT_GROUP as CHANNELS
from orchestrator.plugins.connectors import ENTRY_POINT_GROUP as CONNECTORS


def describe(environ: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every installed plugin as plain data, and the problems found."""
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    for kind, group in (("channel", CHANNELS), ("connector", CONNECTORS)):
        try:
            installed = discover(group, parse_prefer(environ.get(PREFER_ENV)))
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        for item in installed:
            out.append(_one(kind, item, environ, problems))
    return out, problems


def _one(kind: str, item: Installed, environ: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": kind, "name": item.name, "entry_point": item.value, "package": item.dist}
    if item.error:
        problems.append(f"{kind} {item.name}: does not import: {item.error}")
        return {**entry, "status": "broken", "error": item.error, "settings": []}
    settings = []
    for field in item.settings_fields():
        raw = environ.get(field.env)
        shown: dict[str, Any] = {"env": field.env, "secret": field.secret, "set": bool(raw and raw.strip())}
        if not field.secret:
            shown["value"] = raw.strip() if shown["set"] and raw else None
        settings.append(shown)
    entry["settings"] = settings
    try:
        built = configure(item, environ)
    except ConfigError as exc:
        problems.append(f"{kind} {item.name}: {exc}")
        return {**entry, "status": "misconfigured", "error": str(exc)}
    if built.config is not None and not item.error:
        defaults = {f.name: getattr(built.config, f.name) for f in msgspec.structs.fields(built.config)}
        for field, shown in zip(item.settings_fields(), settings, strict=True):
            if not field.secret and shown.get("value") is None and defaults.get(field.name) is not None:
                shown["default"] = defaults[field.name]
    return {**entry, "status": "configured" if built.configured else "not configured"}


def main_plugins(as_json: bool = False, out: TextIO | None = None, environ: Mapping[str, str] | None = None) -> int:
    stream = out or sys.stdout
    plugins, problems = describe(os.environ if environ is None else environ)
    if as_json:
        stream.write(msgspec.json.encode({"plugins": plugins, "problems": problems}).decode() + "\n")
        return 1 if problems else 0
    for plugin in plugins:
        dist = f" ({plugin['package']})" if plugin["package"] else ""
        stream.write(f"{plugin['kind']} {plugin['name']}: {plugin['status']}  {plugin['entry_point']}{dist}\n")
        for s in plugin["settings"]:
            if s["secret"]:
                value = "set" if s["set"] else "unset"
                stream.write(f"    {s['env']} (secret): {value}\n")
            elif s["set"]:
                stream.write(f"    {s['env']} = {s['value']}\n")
            else:
                default = f" (default {s['default']!r})" if "default" in s else ""
                stream.write(f"    {s['env']}: unset{default}\n")
    for problem in problems:
        stream.write(f"error: {problem}\n")
    return 1 if problems else 0
