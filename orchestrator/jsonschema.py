"""JSON Schema of the flow language, for editor completion (`orchestrator schema`).

Generated from `schema.Flow` by msgspec, then adjusted to describe the YAML people
write: a state has no `kind` key there (the loader infers the kind from which key is
present), so each state is `anyOf` the state objects with the tag optional and no
discriminator. `additionalProperties: false` stays, so editors flag a typo'd key.

Point an editor at it with a first line `# yaml-language-server: $schema=flow.schema.json`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import msgspec

from . import schema

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://orchestrator.invalid/schemas/flow.schema.json"

_STATE_HELP: dict[str, str] = {
    "SayState": "say: send or speak a message, then go to `next` or finish with `end`.",
    "AskState": "ask: ask a question and wait for the answer (`input`, `choices`, `save`, `on`).",
    "CallState": "call: run a connector action such as calendar.find_slots; route by `on: {ok, empty, "
                 "conflict, error}`.",
    "BranchState": "branch: go to the first case whose `when` expression is true; the last case has no `when`.",
    "HandoffState": "handoff: transfer the call or notify staff; `on: {no_answer}` on voice.",
    "RecordState": "record: take a voicemail after the prompt.",
    "EndState": "end: finish the conversation with an outcome label (analytics).",
}
_FLOW_HELP: dict[str, str] = {
    "flow": "The flow id: lowercase letters, digits and _.",
    "start": "The name of the first state.",
    "states": "The states by name. A state's kind is the key it holds: say, ask, call, branch, handoff, "
              "record or end.",
    "title": "Shown to people (the business name); available to templates as flow_title.",
    "vars": "Constants available to every template.",
    "settings": "Timezone, language, retries, opening hours and channel behaviour.",
    "intents": "Global intents: they can interrupt any question (ask state).",
}


def _state_ref(name: str) -> str:
    return f"#/$defs/{name}"


def flow_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) a YAML flow file validates against."""
    generated: dict[str, Any] = msgspec.json.schema(schema.Flow)
    defs: dict[str, Any] = generated["$defs"]
    for cls in schema.STATE_TYPES.values():
        definition = defs[cls.__name__]
        definition["required"] = [r for r in definition.get("required", []) if r != "kind"]
        definition["properties"]["kind"]["description"] = "Optional: inferred from the key that is present."
        definition["description"] = _STATE_HELP.get(cls.__name__, "")
    flow = defs["Flow"]
    states = flow["properties"]["states"]
    states["additionalProperties"] = {"anyOf": [{"$ref": _state_ref(c.__name__)} for c in schema.STATE_TYPES.values()]}
    for key, text in _FLOW_HELP.items():
        flow["properties"][key]["description"] = text
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "Conversation orchestrator flow",
        "description": "A YAML flow: states (say, ask, call, branch, handoff, record, end) driven over voice, "
                       "SMS and WhatsApp. Check a file with `orchestrator validate FILE`.",
        "$ref": "#/$defs/Flow",
        "$defs": defs,
    }


def main_schema() -> int:
    """`orchestrator schema`: print the JSON Schema."""
    sys.stdout.write(json.dumps(flow_json_schema(), indent=2) + "\n")
    return 0
