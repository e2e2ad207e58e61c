"""A conversation's summary: what the flow collected, as the owner's staff read it.

    plan(flow, states, templates)             -> SummaryPlan (once per flow revision)
    build(compiled, session, now, ctx, ...)   -> the summary dict (on the last turn, and for a handoff)

The summary carries every `save:` target of an ask, call or record state that got a value,
in the order the flow asks them (a walk from `start` along the routes, intents' states
after), each as `{"name", "label", "value", "text"}`: `label` is the state's `label:` or
the save name humanised (`patient_name` -> "Patient name"); `text` is the value as a person
reads it, with the template filters' own formatting (`datetime`, `date`, `time` in the
flow's timezone and language, `phone` in national form, `label` for choices, slots and
bookings; a recording is its link). `text` is the whole summary rendered: the owner's
`settings.summary` template when the flow has one (same sandbox and context as prompts,
plus `summary` and `fields`), else a headline and one `Label: text` line per field.

The older keys (`name`, `reason`, `wanted`, `booking`, `outcome`, ...) stay: analytics,
the admin API and flow tests read them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.flow import schema
from orchestrator.flow.templates import Template, TemplateEngine
from orchestrator.languages.messages import Catalogue, catalogue

if TYPE_CHECKING:
    from orchestrator.engine.compiler import CompiledFlow, CompiledState, SummaryVars
    from orchestrator.model import Session

log = logging.getLogger(__name__)

# Names the `settings.summary` template may read on top of a prompt's context.
TEMPLATE_NAMES: frozenset[str] = frozenset({"summary", "fields"})
# Outcomes whose headline asks staff to act; `None`: a handoff that goes on after notifying.
_FOLLOW_UP = frozenset({None, "handed_off"})
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_TIME_KINDS = ("datetime", "date", "time")


@dataclass(slots=True)
class FieldSpec:
    """One `save:` target: how to label it and read its value."""

    name: str
    label: str
    kind: str  # an ask's input kind, or "call" / "record"
    choices: dict[str, str] = field(default_factory=dict)  # static choice id -> label


@dataclass(slots=True)
class SummaryPlan:
    fields: list[FieldSpec]
    template: Template | None  # settings.summary, compiled
    filters: Mapping[str, Callable[..., Any]]  # the flow's template filters (time, date, phone, label, ...)
    defaults: Mapping[str, Any]  # the flow's vars: a save target still holding its default was not collected
    left_out: frozenset[str] = frozenset()  # not in the default text: lists only offered as choices (the pick shows)
    words: Catalogue = field(default_factory=catalogue)  # the business's language (the flow's default)
    # a flow of several languages: how each labels a slot, so a slot labelled in the contact's
    # language is shown to staff in the business's ("jue 3 dic, 11:00" -> "Thu 3 Dec, 11:00 AM")
    slot_labels: list[Callable[[Any], str]] = field(default_factory=list)


def humanise(name: str) -> str:
    """`patient_name` -> "Patient name"."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _walk(start: str, states: Mapping[str, CompiledState], intents: Mapping[str, schema.Intent]) -> list[str]:
    """States in the order a conversation meets them: depth first from `start` along each
    state's routes in their written order, then the states only intents reach."""
    from orchestrator.engine.compiler import INTENT_PREFIX

    seen: dict[str, None] = {}
    roots = [start, *(intent.goto for intent in intents.values()), *states]
    for root in roots:
        stack = [root]
        while stack:
            name = stack.pop()
            if name in seen or name not in states:
                continue
            seen[name] = None
            nxt = [dest for trigger, dest in states[name].routes.items() if not trigger.startswith(INTENT_PREFIX)]
            stack.extend(reversed(nxt))
    return list(seen)


def plan(flow: schema.Flow, states: Mapping[str, CompiledState], templates: TemplateEngine,
         words: Catalogue | None = None) -> SummaryPlan:
    specs: dict[str, FieldSpec] = {}
    for name in _walk(flow.start, states, flow.intents):
        state = states[name]
        spec = state.spec
        if not isinstance(spec, (schema.AskState, schema.CallState, schema.RecordState)) or not spec.save:
            continue
        kind = state.input if isinstance(spec, schema.AskState) else state.kind
        found = specs.get(spec.save)
        if found is None:
            found = specs[spec.save] = FieldSpec(spec.save, schema.plain(spec.label or humanise(spec.save)), kind)
        elif spec.label and found.label == humanise(spec.save):
            found.label = schema.plain(spec.label)
        if isinstance(spec, schema.AskState):
            for choice in state.choices:
                found.choices.setdefault(choice.id, choice.label)
    offered = frozenset(spec.choices_from for spec in flow.states.values()
                        if isinstance(spec, schema.AskState) and spec.choices_from in specs)
    source = flow.settings.summary
    return SummaryPlan(
        fields=list(specs.values()),
        template=templates.compile(schema.plain(source)) if source is not None else None,
        filters=templates.env.filters,
        defaults=flow.vars,
        left_out=offered, words=words or catalogue(),
    )


# ------------------------------------------------------------------ reading values


def _collected(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def readable(value: Any, spec: FieldSpec | None, filters: Mapping[str, Callable[..., Any]],
             words: Catalogue | None = None, slot_labels: Sequence[Callable[[Any], str]] = ()) -> str:
    """A saved value as a person reads it (see the module docstring)."""
    kind = spec.kind if spec is not None else "text"
    if isinstance(value, bool):
        return (words or catalogue())["summary_yes" if value else "summary_no"]
    if isinstance(value, str) and spec is not None and value in spec.choices:
        return spec.choices[value]
    try:
        if kind in _TIME_KINDS and isinstance(value, str):
            return str(filters[kind](value))
        if kind == "phone" and isinstance(value, str):
            return str(filters["phone"](value))
        if isinstance(value, Mapping):
            if value.get("url"):  # a recording (the record state's value), with Twilio's transcription once it came
                heard = value.get("transcription")
                return f"{value['url']} (\"{heard}\")" if heard and kind == "record" else str(value["url"])
            if kind == "record" and value.get("transcription"):  # a text "voicemail" (SMS/WhatsApp)
                return str(value["transcription"])
            if "start" in value and not any(value.get(k) for k in ("label", "title", "name")):
                return str(filters["datetime"](value))
            if slot_labels and "start" in value and any(f(value["start"]) == value.get("label") for f in slot_labels):
                return str(filters["datetime"](value["start"]))
            shown = filters["label"](value)
            if shown is not value:
                return str(shown)
            return ", ".join(f"{humanise(str(k))}: {readable(v, None, filters, words)}"
                             for k, v in value.items() if _collected(v))
        if isinstance(value, Sequence) and not isinstance(value, str):
            return ", ".join(readable(item, spec, filters, words, slot_labels) for item in value if _collected(item))
        if isinstance(value, str) and _ISO_DATETIME.match(value.strip()):
            return str(filters["datetime"](value))
        if isinstance(value, str) and _E164.match(value.strip()):
            return str(filters["phone"](value))
    except (ValueError, TypeError, KeyError, OverflowError):
        pass  # a value the filters cannot read is shown as it is
    return str(value)


def fields(plan_: SummaryPlan, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for spec in plan_.fields:
        value = variables.get(spec.name)
        if not _collected(value) or (spec.name in plan_.defaults and plan_.defaults[spec.name] == value):
            continue
        out.append({"name": spec.name, "label": spec.label, "value": value,
                    "text": readable(value, spec, plan_.filters, plan_.words, plan_.slot_labels)})
    return out



CALL_RECORDING = "_call_recording"  # the session variable holding the whole call's recording (voice)


def recording_url(collected: Sequence[Mapping[str, Any]]) -> str | None:
    for item in collected:
        value = item["value"]
        if isinstance(value, Mapping) and value.get("url"):
            return str(value["url"])
    return None


# ------------------------------------------------------------------ the summary


def default_text(plan_: SummaryPlan, title: str, summary: Mapping[str, Any]) -> str:
    """One paragraph: a headline (who, how to reach them, what happened), then `Label: text.`
    per collected field (one line, so it reads the same in an SMS, a log and `chat`)."""
    words = plan_.words
    who = summary.get("name") or words["a_contact"]
    contact = summary.get("contact")
    reach = str(plan_.filters["phone"](contact)) if contact else words["unknown_number"]
    left_out = plan_.left_out
    outcome = summary.get("outcome")
    how = (words.say("follow_up", channel=summary.get("channel")) if outcome in _FOLLOW_UP
           else words.say("via_outcome", channel=summary.get("channel"), outcome=outcome))
    parts = [f"{title}: {who} ({reach}) {how}"]
    for item in summary.get("fields") or ():
        if item["text"] != who and item["name"] not in left_out:  # the name is in the headline already
            shown = " ".join(str(item["text"]).split())
            parts.append(f"{item['label']}: {shown}" + ("" if shown.endswith((".", "!", "?")) else "."))
    return " ".join(parts)


def build(
    compiled: CompiledFlow, session: Session, now: float, ctx: Mapping[str, Any], *,
    profile_name: str | None = None, outcome: str | None = None,
) -> dict[str, Any]:
    """The summary of `session` as it stands. `profile_name` is the name the channel gave
    (WhatsApp profile, caller id), used when the flow asked none; `outcome` overrides the
    session's (a handoff about to end the conversation notifies staff before the end)."""
    plan_: SummaryPlan = compiled.summary
    names: SummaryVars = compiled.summary_vars
    variables = session.vars

    def var(name: str | None) -> Any:
        return variables.get(name) if name else None

    collected = fields(plan_, variables)
    summary: dict[str, Any] = {
        "flow": session.flow, "contact": session.contact, "channel": session.channel,
        "name": var(names.name) or profile_name, "reason": var(names.reason),
        "wanted": var(names.wanted), "booking": var(names.booking), "outcome": outcome or session.outcome,
        "turns": session.turns, "duration": round(now - session.started_at, 3),
        "recording": recording_url(collected), "fields": collected,
    }
    call = variables.get(CALL_RECORDING)
    if isinstance(call, Mapping) and call.get("url"):
        summary["call_recording"] = call["url"]
        summary["recording"] = summary["recording"] or call["url"]
    summary["text"] = text(compiled, summary, ctx)
    return summary


def text(compiled: CompiledFlow, summary: Mapping[str, Any], ctx: Mapping[str, Any]) -> str:
    """The owner's `settings.summary` rendered, else the default text. A template that fails
    is logged and the default sent: staff are never left without the lead."""
    plan_: SummaryPlan = compiled.summary
    if plan_.template is not None:
        try:
            return plan_.template.render({**ctx, "summary": summary, "fields": summary["fields"]}).strip()
        except Exception as exc:
            log.warning("flow %s: settings.summary failed to render, sending the default summary: %s",
                        compiled.id, exc)
    return default_text(plan_, compiled.title, summary)
