"""A flow's texts per language (SPEC §9): which languages it speaks, and the flow in one of them.

Every text of the flow language may be one string or a map by language (`ask: {en: "...",
es: "..."}`); `match:` lists likewise (`{en: [cut], es: [corte]}`). `localize(flow, lang)`
returns the flow with each map replaced by that language's string (the default language's
when a translation is missing: `validate` reports it, the engine never speaks a map), so
everything downstream (compiler, channel limits, templates) sees plain strings. A flow
without `settings.languages` is returned as it is.

`TEXT_FIELDS` is the one list of which keys are texts; `text_maps` walks them for `validate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import msgspec

from orchestrator.flow import schema

# Struct -> its text fields. A new text key of the flow language is added here, nowhere else.
TEXT_FIELDS: dict[type[msgspec.Struct], tuple[str, ...]] = {
    schema.Settings: ("consent_notice", "voice", "reminder", "help_text", "summary", "whatsapp_template",
                      "whatsapp_template_language", "voice_filler", "machine_message"),
    schema.Choice: ("label", "match", "description"),
    schema.Intent: ("match",),
    schema.Answer: ("say", "match"),
    schema.ChannelOverride: ("say", "ask", "reprompt", "handoff", "record"),
    schema.SayState: ("say",),
    schema.AskState: ("ask", "label", "reprompt", "confirm"),
    schema.CallState: ("label",),
    schema.HandoffState: ("say",),
    schema.RecordState: ("record", "label", "notice"),
    schema.EndState: ("say",),
}
_OVERRIDES = schema.CHANNELS
_TAG = re.compile(r"[-_]")


def primary(tag: str) -> str:
    """`"es-MX"` -> `"es"`; `"en_us"` -> `"en"`."""
    return _TAG.split(tag.strip(), maxsplit=1)[0].lower()


def declared(settings: schema.Settings) -> list[str]:
    """The languages a flow speaks, the default first: `languages`, else `[language]`."""
    return list(settings.languages) or [settings.language]


def default_language(settings: schema.Settings) -> str:
    return declared(settings)[0]


def tag_of(language: str, settings: schema.Settings, fallback_region: str | None = None) -> str:
    """The full tag a declared language speaks as: itself when it names a region (`es-MX`),
    else `settings.language` when that is the same language (`en` with `language: en-GB`),
    else `fallback_region` (the catalogue's, `es` -> `es-ES`)."""
    if "-" in language or "_" in language:
        return language.replace("_", "-")
    if primary(settings.language) == primary(language):
        return settings.language.replace("_", "-")
    return f"{language}-{fallback_region}" if fallback_region else language


def region(tag: str) -> str | None:
    """`"es-ES"` -> `"ES"`; `"es"` -> None."""
    parts = _TAG.split(tag.strip())
    return parts[-1].upper() if len(parts) > 1 else None


def pick(value: Any, language: str, default: str) -> Any:
    """One language's value of a text (or `match:` list): a map's entry, else the default's."""
    if isinstance(value, dict):
        if language in value:
            return value[language]
        if default in value:
            return value[default]
        return next(iter(value.values()), None)
    return value


def _localize_struct(obj: Any, language: str, default: str) -> Any:
    fields = TEXT_FIELDS.get(type(obj))
    changes: dict[str, Any] = {}
    if fields:
        for name in fields:
            value = getattr(obj, name)
            if isinstance(value, dict):
                changes[name] = pick(value, language, default)
    if isinstance(obj, schema.StateBase):
        for channel in _OVERRIDES:
            override = getattr(obj, channel)
            if override is not None:
                fixed = _localize_struct(override, language, default)
                if fixed is not override:
                    changes[channel] = fixed
    if isinstance(obj, schema.AskState) and obj.choices:
        choices = {cid: _localize_struct(c, language, default) for cid, c in obj.choices.items()}
        if any(choices[cid] is not c for cid, c in obj.choices.items()):
            changes["choices"] = choices
    return msgspec.structs.replace(obj, **changes) if changes else obj


def localize(flow: schema.Flow, language: str | None = None) -> schema.Flow:
    """`flow` in `language` (default: the flow's default language), every text a plain string."""
    if not flow.settings.languages:
        return flow
    default = default_language(flow.settings)
    language = language or default
    return msgspec.structs.replace(
        flow,
        settings=_localize_struct(flow.settings, language, default),
        states={name: _localize_struct(st, language, default) for name, st in flow.states.items()},
        intents={name: _localize_struct(i, language, default) for name, i in flow.intents.items()},
        answers={name: _localize_struct(a, language, default) for name, a in flow.answers.items()},
    )


def has_maps(flow: schema.Flow) -> bool:
    return next(text_maps(flow), None) is not None


def text_maps(flow: schema.Flow) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every text written as a map, with its `$.path` (for positioned diagnostics)."""

    def walk(obj: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for name in TEXT_FIELDS.get(type(obj), ()):
            value = getattr(obj, name)
            if isinstance(value, dict):
                yield f"{path}.{name}", value
        if isinstance(obj, schema.StateBase):
            for channel in _OVERRIDES:
                override = getattr(obj, channel)
                if override is not None:
                    yield from walk(override, f"{path}.{channel}")
        if isinstance(obj, schema.AskState):
            for cid, choice in (obj.choices or {}).items():
                yield from walk(choice, f"{path}.choices.{cid}")

    yield from walk(flow.settings, "$.settings")
    for name, state in flow.states.items():
        yield from walk(state, f"$.states.{name}")
    for name, intent in flow.intents.items():
        yield from walk(intent, f"$.intents.{name}")
    for name, answer in flow.answers.items():
        yield from walk(answer, f"$.answers.{name}")
