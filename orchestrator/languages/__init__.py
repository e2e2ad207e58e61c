"""Languages: what people say in each (the rules the readers use) and, per language, the
engine's own words (a message catalogue).

A language is a `LanguagePack`: its code ("es"), its understanding rules
(`rules.LanguageRules`, tables as data in `en.py`, `es.py`) and optionally the path of its
message catalogue. English and Spanish ship here; another language is added without
touching the engine, by an installed package advertising a pack in the
`orchestrator.languages` entry-point group:

    [project.entry-points."orchestrator.languages"]
    fr = "orchestrator_fr:PACK"      # PACK = LanguagePack(code="fr", rules=RULES, ...)

or at run time with `register(pack)` (tests, embedding). `pack_for("fr-CA")` finds the pack
by the tag's primary subtag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from orchestrator.languages.rules import (
    LanguageRules,
    primary,
    register_rules,
    registered,
    rules_for,
    unregister_rules,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LanguagePack",
    "LanguageRules",
    "load_entry_points",
    "pack_for",
    "packs",
    "primary",
    "register",
    "register_rules",
    "rules_for",
    "unregister",
]

ENTRY_POINT_GROUP = "orchestrator.languages"

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LanguagePack:
    """One language: `code` (a primary subtag, "fr"), its understanding `rules`, and the
    path of its message catalogue (None: the engine's words fall back to English)."""

    code: str
    rules: LanguageRules
    catalogue_path: Path | None = None


_PACKS: dict[str, LanguagePack] = {}
_BUILTIN_DONE = False
_ENTRY_POINTS_DONE = False


def register(pack: LanguagePack) -> None:
    """Add (or replace) a language pack; its rules become `rules_for(pack.code)`."""
    _builtin()
    _PACKS[primary(pack.code)] = pack
    register_rules(pack.code, pack.rules)
    _forget_catalogues()


def unregister(code: str) -> None:
    """Forget a registered language (its tags fall back to English); the built-in English
    cannot be removed."""
    key = primary(code)
    if key == "en":
        return
    _PACKS.pop(key, None)
    unregister_rules(key)
    _forget_catalogues()


def _forget_catalogues() -> None:
    """A pack added or removed at run time: catalogues are looked up again (they are cached)."""
    from orchestrator.languages import messages

    messages.catalogue.cache_clear()


def packs() -> dict[str, LanguagePack]:
    """Every known language pack by code (built in, registered, installed)."""
    _builtin()
    load_entry_points()
    return dict(_PACKS)


def pack_for(tag: str | None) -> LanguagePack | None:
    """The pack of a language tag ("es-MX" -> the "es" pack), None when there is none."""
    return packs().get(primary(tag))


def _builtin() -> None:
    global _BUILTIN_DONE
    if _BUILTIN_DONE:
        return
    _BUILTIN_DONE = True
    from orchestrator.languages import en, es

    for module in (en, es):
        _PACKS.setdefault(module.PACK.code, module.PACK)


def load_entry_points(*, again: bool = False) -> None:
    """Register the packs of installed packages (`orchestrator.languages` entry points),
    once (`again=True`: look again, after installing one). An entry point names an object
    with `code` and `rules` (a `LanguagePack`); one that fails to load is logged and
    skipped, the other languages still work."""
    global _ENTRY_POINTS_DONE
    if _ENTRY_POINTS_DONE and not again:
        return
    _ENTRY_POINTS_DONE = True
    _builtin()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            code, rules = obj.code, obj.rules
        except Exception as exc:  # a broken third-party pack must not stop the others
            log.warning("language pack %s (%s) could not be loaded: %s; fix or uninstall it",
                        ep.name, ep.value, exc)
            continue
        if not isinstance(rules, LanguageRules):
            log.warning("language pack %s: `rules` is not a LanguageRules; skipped", ep.name)
            continue
        pack = obj if isinstance(obj, LanguagePack) else LanguagePack(
            code=str(code), rules=rules, catalogue_path=getattr(obj, "catalogue_path", None)
        )
        _PACKS[primary(pack.code)] = pack
        register_rules(pack.code, rules)


def registered_codes() -> list[str]:
    """The codes of every language whose rules are known."""
    return sorted(registered())
