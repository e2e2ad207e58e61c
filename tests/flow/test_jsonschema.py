"""The JSON Schema validates the shipped flows and flags typos, as an editor would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.jsonschema import flow_json_schema, main_schema
from orchestrator.loader import yaml_data

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
