"""Per-channel limits, checked when a flow is validated: what each installed channel declares
it can show (`Capabilities`) against what the flow asks it to show.

A WhatsApp button title has 20 characters, a list row title 24 and a list 10 rows; an SMS
reply has the flow's segment budget. Past a limit the channel still delivers, degraded in
`render.present` (a list instead of buttons, a numbered menu, a cut title, several texts);
these warnings name the state, the channel and the rendering that will be used instead, so
the owner sees it before a customer does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from orchestrator.engine import textsize
from orchestrator.engine.compiler import static_choices
from orchestrator.engine.render import numbered_menu, present
from orchestrator.flow import schema
from orchestrator.model import Outbound
from orchestrator.plugins.channels import Capabilities

_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_PLACEHOLDER = "x" * 10  # what a `{{ value }}` is counted as: a name, a date, a slot label


def _menu_warnings(name: str, state: schema.AskState, channel: str, caps: Capabilities,
                   ) -> Iterator[tuple[str, str, str]]:
    choices = static_choices(state)
    shown = present(Outbound(kind="ask", text="?", choices=choices), caps)
    base = f"$.states.{name}.choices"
    where = f"state '{name}' on {channel}"
    if shown.mode == "numbered":
        why = (f"{len(choices)} choices: a list holds at most {caps.max_list_rows} rows"
               if len(choices) > caps.max_list_rows else "their shortened titles would look alike")
        yield base, f"{where}: {why}, so they are sent as a numbered text menu", (
            f"keep at most {caps.max_list_rows} choices with distinct short labels, or split the question")
        return
    if shown.mode == "list" and len(choices) <= caps.max_buttons:
        long = next((c for c in choices if len(" ".join(c.label.split())) > caps.button_title_len), choices[0])
        yield f"{base}.{long.id}.label", (
            f"{where}: '{long.label}' would be cut inside a word as a button ({caps.button_title_len} "
            f"characters at most), so the {len(choices)} choices are sent as a list instead of buttons"), (
            f"shorten the labels to {caps.button_title_len} characters to get buttons")
    limit = caps.button_title_len if shown.mode == "buttons" else caps.row_title_len
    what = "button title" if shown.mode == "buttons" else "list row title"
    for original, seen in zip(choices, shown.choices, strict=True):
        if seen.label != " ".join(original.label.split()):
            extra = "" if shown.mode == "buttons" else "; the full label shows as the row's description"
            yield f"{base}.{original.id}.label", (
                f"{where}: the {what} '{original.label}' has {len(original.label)} characters, at most {limit} "
                f"fit: it shows as '{seen.label}'{extra}"), f"shorten the label to {limit} characters"


def _sms_texts(name: str, state: schema.State) -> Iterator[tuple[str, str]]:
    override = state.sms
    for field in ("say", "ask", "handoff", "record"):
        text = getattr(override, field, None) if override is not None else None
        path = f"$.states.{name}.sms.{field}"
        if text is None:
            text, path = getattr(state, field, None), f"$.states.{name}.{field}"
        if isinstance(text, str) and field != "handoff":
            if isinstance(state, schema.AskState) and field == "ask" and state.choices:
                text = f"{text}\n{numbered_menu(static_choices(state))}"
            yield path, text


def limit_warnings(flow: schema.Flow, capabilities: Mapping[str, Capabilities]) -> Iterator[tuple[str, str, str]]:
    """(path, message, hint) for every place the flow exceeds an installed channel's limits."""
    menus = {caps.idiom: (name, caps) for name, caps in capabilities.items() if caps.max_buttons or caps.max_list_rows}
    sms = any(caps.segment_budget for caps in capabilities.values())
    budget = flow.settings.sms_segment_budget
    for name, state in flow.states.items():
        if isinstance(state, schema.AskState) and state.choices:
            for idiom, (_channel, caps) in menus.items():
                yield from _menu_warnings(name, state, idiom, caps)
        if not sms or budget <= 0:
            continue
        for path, text in _sms_texts(name, state):
            n = textsize.segments(_TEMPLATE.sub(_PLACEHOLDER, text))
            if n > budget:
                parts = -(-n // budget)
                yield path, (f"state '{name}' on sms: the text is about {n} segments, over the budget of {budget} "
                             f"(settings.sms_segment_budget): it is sent as {parts} messages"), (
                    "shorten it, or give the state an 'sms:' override with a shorter text")
