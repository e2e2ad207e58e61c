"""Secret references in `business.yaml`: `env:NAME` (an environment variable) or `file:/path`
(a file's content, stripped; for Google's service account the path itself). A literal secret
is refused by the loader: business folders are edited by many hands and copied around.

    value = resolve("env:LUNA_TWILIO_TOKEN", environ)    # MissingSecret naming LUNA_TWILIO_TOKEN
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from orchestrator.errors import ConfigError

REFERENCE = re.compile(r"^(?:env:[A-Za-z_][A-Za-z0-9_]*|file:/\S.*)$")


class MissingSecret(ConfigError):
    """A referenced secret is not there (the variable unset or empty, the file unreadable)."""


def is_reference(value: str) -> bool:
    return bool(REFERENCE.match(value))


def resolve(value: str, environ: Mapping[str, str], *, what: str = "secret", path_only: bool = False) -> str:
    """The value a reference stands for; a non-reference is returned as written (non-secret fields
    such as an account SID may be written out). MissingSecret names the variable or the file."""
    if value.startswith("env:"):
        name = value[4:]
        found = (environ.get(name) or "").strip()
        if not found:
            raise MissingSecret(f"{what}: the environment variable {name} is not set; set it, or point the "
                                "reference at another variable")
        return found
    if value.startswith("file:"):
        path = Path(value[5:])
        if path_only:
            if not path.is_file():
                raise MissingSecret(f"{what}: the file {path} does not exist; put it there or fix the reference")
            return str(path)
        try:
            found = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise MissingSecret(f"{what}: the file {path} cannot be read ({type(exc).__name__}); put the secret "
                                "there (UTF-8 text) or fix the reference") from None
        if not found:
            raise MissingSecret(f"{what}: the file {path} is empty")
        return found
    return value
