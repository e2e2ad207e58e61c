"""`orchestrator validate DIR` on a businesses directory (or one business folder): every
business.yaml and every flow of every business checked, `file:line:col: message (hint: ...)`.

A secret reference that does not resolve in this environment is a warning here (CI runs
without the secrets); `serve` refuses that business."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.businesses.loader import FILE, LoadedBusiness, business_folders, load_businesses_dir
from orchestrator.businesses.secrets import MissingSecret, is_reference, resolve
from orchestrator.errors import Diagnostic, FlowError


def is_businesses_path(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / FILE).is_file() or bool(business_folders(p)))


def _secret_warnings(loaded: LoadedBusiness) -> list[Diagnostic]:
    """A warning at each reference that does not resolve here."""
    creds: dict[str, Any] = msgspec.to_builtins(loaded.config.credentials)
    out: list[Diagnostic] = []
    for section, fields in creds.items():
        for name, value in (fields or {}).items() if isinstance(fields, dict) else ():
            if not isinstance(value, str) or not is_reference(value):
                continue
            try:
                resolve(value, os.environ, what=f"credentials.{section}.{name}",
                        path_only=(section, name) == ("calendar", "credentials"))
            except MissingSecret as exc:
                out.append(loaded.diagnostic(f"$.credentials.{section}.{name}", str(exc),
                                             "set it where the server runs; `serve` refuses this business until then",
                                             severity="warning"))
    return out


def check_paths(paths: list[str]) -> list[Diagnostic]:
    from orchestrator.flow.loader import load_flow
    from orchestrator.flow.validate import validate
    from orchestrator.plugins.connectors import default_connectors

    connectors = default_connectors()
    found: list[Diagnostic] = []
    for path in paths:
        root = Path(path)
        parent = root.parent if (root / FILE).is_file() else root
        loaded, problems = load_businesses_dir(parent)
        if (root / FILE).is_file():
            loaded = {k: v for k, v in loaded.items() if v.folder == root}
            problems = {k: v for k, v in problems.items() if Path(k) == root}
        for exc in problems.values():
            found.extend(exc.diagnostics)
        for business in loaded.values():
            found.extend(business.warnings)
            found.extend(_secret_warnings(business))
            for flow_file in sorted(business.flows_dir.glob("*.y*ml")):
                try:
                    found.extend(validate(load_flow(flow_file), connectors))
                except FlowError as exc:
                    found.extend(exc.diagnostics)
    return found


def main_validate_businesses(paths: list[str], *, strict: bool = False) -> int:
    found = check_paths(paths)
    for d in found:
        print(d.format())
    errors = sum(d.is_error for d in found)
    warnings = len(found) - errors
    if errors or (strict and warnings):
        print(f"businesses checked: {errors} error(s), {warnings} warning(s)")
        return 1
    print("businesses checked: all valid" + (f", {warnings} warning(s)" if warnings else ""))
    return 0
