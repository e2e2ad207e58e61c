"""The JSON Schema validates the shipped flows and flags typos, as an editor would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.flow import jsonschema as jsonschema_module
from orchestrator.flow import schema
from orchestrator.flow.jsonschema import flow_json_schema, main_schema
from orchestrator.flow.loader import yaml_data

from .conftest import FLOWS


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = flow_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator: jsonschema.Draft202012Validator, data: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


def test_schema_header() -> None:
    schema = flow_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]
    assert "kind" not in schema["$defs"]["SayState"]["required"]


@pytest.mark.parametrize("path", FLOWS, ids=[p.name for p in FLOWS])
def test_shipped_flows_match(path: Path, validator: jsonschema.Draft202012Validator) -> None:
    assert _errors(validator, yaml_data(path.read_text())) == []


SMALL = """\
flow: demo
start: greet
settings: {timezone: UTC, no_reply_timeout: 10m}
states:
  greet: {say: Hi, next: menu}
  menu:
    ask: Which?
    choices: {a: {label: A, dtmf: "1"}}
    on: {a: bye, fail: bye}
  bye: {end: done}
"""


def test_small_flow_matches(validator: jsonschema.Draft202012Validator) -> None:
    assert _errors(validator, yaml_data(SMALL)) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("next: menu", "nxt: menu"),  # typo'd state key
        ("label: A", "lable: A"),  # typo'd choice key
        ("timezone: UTC", "timezon: UTC"),  # typo'd setting
        ("no_reply_timeout: 10m", "no_reply_timeout: 10 minutes"),  # bad duration
        ("flow: demo", "flow: Demo"),  # bad id
        ("  bye: {end: done}", "  bye: {ending: done}"),  # no kind key
    ],
)
def test_typos_fail(old: str, new: str, validator: jsonschema.Draft202012Validator) -> None:
    assert old in SMALL
    assert _errors(validator, yaml_data(SMALL.replace(old, new)))


def test_main_schema_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_schema() == 0
    assert json.loads(capsys.readouterr().out) == flow_json_schema()


# -- every key described (docs/SPEC.md §13; the table is jsonschema.DESCRIPTIONS) -----------

def _properties() -> list[tuple[str, str, dict[str, Any]]]:
    defs = flow_json_schema()["$defs"]
    return [(name, key, prop) for name, d in sorted(defs.items()) for key, prop in d.get("properties", {}).items()]


def _table_keys_that_exist() -> set[str]:
    real = {f"{name}.{key}" for name, key, _ in _properties()}
    states = {c.__name__ for c in schema.STATE_TYPES.values()}
    common = {key for name, key, _ in _properties() if name in states}
    return real | {f"StateBase.{key}" for key in common}


def test_every_property_of_every_definition_has_a_description() -> None:
    missing = [f"{name}.{key}" for name, key, prop in _properties() if not str(prop.get("description", "")).strip()]
    assert missing == [], f"add these to orchestrator/flow/jsonschema.py DESCRIPTIONS: {missing}"
    defs = flow_json_schema()["$defs"]
    assert [name for name, d in defs.items() if not d.get("description")] == []


def test_a_key_without_a_description_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(jsonschema_module.DESCRIPTIONS, "Settings.buffer")
    assert "description" not in flow_json_schema()["$defs"]["Settings"]["properties"]["buffer"]
    with pytest.raises(AssertionError, match=r"Settings\.buffer"):
        test_every_property_of_every_definition_has_a_description()


def test_description_table_names_only_real_keys() -> None:
    stale = set(jsonschema_module.DESCRIPTIONS) - _table_keys_that_exist()
    assert stale == set(), f"DESCRIPTIONS names keys the schema does not have: {sorted(stale)}"


def test_state_keys_fall_back_to_statebase() -> None:
    ask = flow_json_schema()["$defs"]["AskState"]["properties"]
    assert ask["voice"]["description"] == jsonschema_module.DESCRIPTIONS["StateBase.voice"]
    assert ask["kind"]["description"].startswith("Optional")
    assert flow_json_schema()["$defs"]["Settings"]["properties"]["staff_notify"]["description"] \
        == jsonschema_module.DESCRIPTIONS["Settings.staff_notify"]
