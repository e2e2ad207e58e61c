"""The engine's own words per language (SPEC §9): one catalogue file per language.

Everything the product says that no flow wrote (apologies, reprompt hints, the built-in
fallback, read-backs, menus, STOP / HELP answers, the staff summary's headings) is a key of
`catalogue/en.yaml`. `catalogue(tag)` gives the catalogue of a language tag (`es-MX` -> the
`es` one), each file read once; a key a language lacks is said in English, and a language
without a catalogue speaks English. A language from outside the engine brings its file as
a language pack (`orchestrator.languages` entry points, `LanguagePack.catalogue_path`).

A catalogue also names the full tag a bare code speaks as (`es` -> `es-ES`), the TwiML voice
used when the flow names none, and optionally CLDR date patterns (`formats:`): dates and
times are formatted by babel in the language, never with hand-written month names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import ConfigError

CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogue"
BASE = "en"
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Catalogue:
    """One language's words; `words[key]` or `say(key, **fields)`."""

    language: str  # the primary code: en, es
    tag: str  # the full tag a bare code speaks as: en-US, es-ES
    voice: str  # TwiML <Say voice> when the flow names none
    words: Mapping[str, str]
    formats: Mapping[str, str] = field(default_factory=dict)  # date / datetime / time CLDR patterns
    path: str = ""
    voices: Mapping[str, str] = field(default_factory=dict)  # region -> voice (`es-MX` -> Polly.Mia)

    def voice_for(self, tag: str) -> str:
        """The TwiML voice of a full tag: its region's, else the language's."""
        region = re.split(r"[-_]", tag.strip())[-1].upper() if re.search(r"[-_]", tag) else ""
        return self.voices.get(region, self.voice)

    def __getitem__(self, key: str) -> str:
        return self.words[key]

    def say(self, key: str, **fields: Any) -> str:
        return self.words[key].format(**fields)

    def options(self, labels: list[str]) -> str:
        """`["Cut", "Colour", "Beard"]` -> "Cut, Colour or Beard" in the language."""
        if len(labels) <= 1:
            return "".join(labels)
        return ", ".join(labels[:-1]) + self.words["or"] + labels[-1]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"language catalogue {path}: cannot be read ({exc}); fix the file") from exc
    if not isinstance(data, dict) or not isinstance(data.get("words"), dict):
        raise ConfigError(f"language catalogue {path}: needs a `words:` mapping of key: text (see catalogue/en.yaml)")
    bad = [k for k, v in data["words"].items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ConfigError(f"language catalogue {path}: {bad[:3]} are not `key: \"text\"` entries; quote them")
    return data


def load(path: Path, base: Catalogue | None = None) -> Catalogue:
    """A catalogue file, its missing keys taken from `base` (English)."""
    data = _read(path)
    words: dict[str, str] = dict(base.words) if base is not None else {}
    own = {str(k): str(v) for k, v in data["words"].items()}
    if base is not None:
        for key, text in own.items():
            wanted = set(_FIELD.findall(base.words.get(key, "")))
            if key in base.words and not set(_FIELD.findall(text)) <= wanted:
                raise ConfigError(f"language catalogue {path}: {key!r} uses fields {sorted(_FIELD.findall(text))}, "
                                  f"English has only {sorted(wanted)}; use those")
    words.update(own)
    language = str(data.get("language") or path.stem)
    return Catalogue(
        language=language, tag=str(data.get("tag") or language), voice=str(data.get("voice") or
                                                                            (base.voice if base else "")),
        words=words, formats={str(k): str(v) for k, v in (data.get("formats") or {}).items()}, path=str(path),
        voices={str(k).upper(): str(v) for k, v in (data.get("voices") or {}).items()},
    )


def primary(tag: str) -> str:
    return re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()


def _pack_path(language: str) -> Path | None:
    """The catalogue a language pack (built in, registered, or an `orchestrator.languages`
    entry point) brings, if any."""
    from orchestrator.languages import pack_for  # the package imports this module's users

    pack = pack_for(language)
    path = pack.catalogue_path if pack is not None else None
    return Path(path) if path else None


@lru_cache(maxsize=64)
def catalogue(tag: str | None = None) -> Catalogue:
    """The catalogue of a language tag (`es`, `es-MX`, `en_US`); English when none exists."""
    english = _english()
    language = primary(tag or BASE)
    if language == BASE:
        return english
    path = _pack_path(language)
    if path is None or not path.is_file():
        path = CATALOGUE_DIR / f"{language}.yaml"
    if not path.is_file():
        return english
    return load(path, english)


@lru_cache(maxsize=1)
def _english() -> Catalogue:
    return load(CATALOGUE_DIR / f"{BASE}.yaml")


def known(tag: str) -> bool:
    """Whether a language has a catalogue of its own (else it would speak English)."""
    return catalogue(tag).language == primary(tag) or primary(tag) == BASE
