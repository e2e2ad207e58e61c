"""The loader: positions of YAML nodes and keys, revisions, and what it refuses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.errors import FlowError
from orchestrator.flow import schema
from orchestrator.flow.loader import load_flow, load_flow_text, revision_of, yaml_data

from .conftest import FLOWS

TEXT = """\
flow: demo
start: menu
states:
  menu:
    ask: Book?
    choices:
      book: {label: Book, dtmf: "1"}
    on:
      book: done
      fail: done
  route:
    branch:
      - {when: contact.known, goto: done}
      - goto: done
  done: {end: booked}
"""


def test_positions_of_values_and_keys() -> None:
    loaded = load_flow_text(TEXT, "demo.yaml")
    p = loaded.positions
    assert p["$"] == (1, 1)
    assert p["$.states"] == (4, 3)
    assert p["$.states.menu"] == (5, 5)
    assert p["$.states.menu.on"] == (9, 7)
    assert p["$.states.menu.on.book"] == (9, 13)
    assert p["$.states.menu.choices.book.dtmf"] == (7, 33)
    assert p["$.states.route.branch[0].goto"] == (13, 37)
    assert p["$.states.route.branch[1].goto"] == (14, 15)
    assert loaded.key_positions["$.states.menu"] == (4, 3)
    assert loaded.key_positions["$.states.menu.on.fail"] == (10, 7)
    assert loaded.position("$.states.menu.on.nothing") == (9, 7)  # nearest known ancestor
    assert loaded.position("$.states.menu", key=True) == (4, 3)


def test_revision_is_sha256_prefix_and_fields() -> None:
    loaded = load_flow_text(TEXT, "demo.yaml")
    assert loaded.revision == revision_of(TEXT) and len(loaded.revision) == 12
    assert loaded.revision != load_flow_text(TEXT + "# changed\n").revision
    assert loaded.filename == "demo.yaml" and loaded.source == TEXT
    assert isinstance(loaded.flow.states["menu"], schema.AskState)
    assert isinstance(loaded.flow.states["done"], schema.EndState)


def test_on_key_stays_text_unlike_safe_load() -> None:
    # YAML 1.1 reads a bare `on` as true; the loader must keep it as the key "on"
    data = yaml_data("on: {ok: a}\ndate: 2026-12-25\n")
    assert data == {"on": {"ok": "a"}, "date": "2026-12-25"}


def test_unquoted_dates_are_iso_text() -> None:
    loaded = load_flow_text("flow: d\nstart: a\nsettings:\n  closed_dates: [2026-12-25]\nstates:\n  a: {end: x}\n")
    assert loaded.flow.settings.closed_dates == ["2026-12-25"]


def test_duplicate_keys_are_refused_everywhere() -> None:
    with pytest.raises(FlowError) as info:
        load_flow_text("flow: d\nstart: a\nstates:\n  a:\n    say: hi\n    say: ho\n    end: x\n", "d.yaml")
    (d,) = info.value.diagnostics
    assert d.format().startswith("d.yaml:6:5: duplicate key 'say' in state 'a' (first at line 5:5)")


@pytest.mark.parametrize(
    ("text", "fragment", "line", "col"),
    [
        ("flow: d\nstates:\n\tx: 1\n", "YAML syntax error", 3, 1),
        ("flow: d\nstart: [a\n", "YAML syntax error", 3, 1),
        ("flow: d\n---\nflow: e\n", "YAML syntax error", 2, 1),
        ("just text\n", "a flow file must be a mapping at the top, found the value 'just text'", 1, 1),
        ("", "the flow file is empty", 1, 1),
        ("flow: d\nstart: a\nstates: {a: {end: x}}\nvars: {x: *nope}\n", "YAML syntax error", 4, 11),
    ],
)
def test_syntax_and_shape_errors(text: str, fragment: str, line: int, col: int) -> None:
    with pytest.raises(FlowError) as info:
        load_flow_text(text, "s.yaml")
    (d,) = info.value.diagnostics
    assert fragment in d.message
    assert (d.line, d.col) == (line, col), d.format()


def test_tab_gets_a_hint() -> None:
    with pytest.raises(FlowError) as info:
        load_flow_text("flow: d\nstates:\n\tx: 1\n")
    assert (info.value.diagnostics[0].hint or "").startswith("indent with spaces, not tabs")


def test_unknown_key_deep_in_a_choice() -> None:
    text = (
        "flow: d\nstart: a\nstates:\n  a:\n    ask: Q\n    choices:\n      x: {lable: X}\n"
        "    on: {x: b, fail: b}\n  b: {end: z}\n"
    )
    with pytest.raises(FlowError) as info:
        load_flow_text(text, "c.yaml")
    (d,) = info.value.diagnostics
    assert d.format() == "c.yaml:7:11: unknown key 'lable' in state 'a' key 'choices.x' (hint: did you mean 'label'?)"


def test_wrong_type_inside_the_second_state_is_located() -> None:
    text = "flow: d\nstart: a\nstates:\n  a: {say: x, next: b}\n  b:\n    say: y\n    end: [1]\n"
    with pytest.raises(FlowError) as info:
        load_flow_text(text, "w.yaml")
    (d,) = info.value.diagnostics
    assert (d.line, d.col, d.path) == (7, 10, "$.states.b.end")
    assert d.message == "state 'b' key 'end' should be text, found a list"


def test_load_flow_reads_files_and_names_them(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(TEXT)
    assert load_flow(path).filename == str(path)
    with pytest.raises(FlowError, match="cannot read the flow file"):
        load_flow(tmp_path / "absent.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"flow: \xff\n")
    with pytest.raises(FlowError, match="not UTF-8"):
        load_flow(tmp_path / "bin.yaml")


@pytest.mark.parametrize("path", FLOWS, ids=[p.name for p in FLOWS])
def test_shipped_flows_load_fast(path: Path) -> None:
    load_flow(path)
    started = time.perf_counter()
    for _ in range(10):
        loaded = load_flow(path)
    per_load_ms = (time.perf_counter() - started) * 100
    assert loaded.positions["$.states"] >= (1, 1)
    assert per_load_ms < 50, f"{per_load_ms:.1f} ms per load"


def test_numbers_for_text_in_many_states_load_quickly() -> None:
    lines = ["flow: big", "start: s0", "vars: {count: 3}", "states:"]
    for i in range(200):
        lines += [f"  s{i}:", "    ask: Q", "    choices:", "      a: {dtmf: 1, match: [yes, 2]}",
                  f"    on: {{a: s{(i + 1) % 200}, fail: s0}}"]
    started = time.perf_counter()
    loaded = load_flow_text("\n".join(lines))
    assert time.perf_counter() - started < 1.0
    choice = loaded.flow.states["s199"].choices["a"]  # type: ignore[union-attr]
    assert (choice.dtmf, choice.match) == ("1", ["yes", "2"])
    assert loaded.flow.vars == {"count": 3}  # free-form values keep their YAML type


def test_error_in_a_later_state_nested_mapping_is_located() -> None:
    text = (
        "flow: d\nstart: a\nstates:\n"
        "  a:\n    ask: Q\n    choices: {x: {label: X}}\n    on: {x: b, fail: b}\n"
        "  b:\n    ask: Q\n    choices: {x: {label: X}, y: {label: [1]}}\n    on: {x: a, y: a, fail: a}\n"
    )
    with pytest.raises(FlowError) as info:
        load_flow_text(text, "n.yaml")
    (d,) = info.value.diagnostics
    assert (d.line, d.col, d.path) == (10, 41, "$.states.b.choices.y.label")
    assert d.message == "state 'b' key 'choices.y.label' should be text, found a list"


def test_every_structural_problem_is_reported_at_once() -> None:
    text = """\
flow: several
start: greet
settings: {timezone: UTC, no_reply_timeout: 10x, max_retry: 3}
states:
  greet:
    say: "Hi"
    nxt: done
  done:
    end: ok
    next: greet
"""
    with pytest.raises(FlowError) as info:
        load_flow_text(text, "several.yaml")
    found = [(d.line, d.message) for d in info.value.diagnostics]
    assert [line for line, _ in found] == [3, 3, 7, 10]
    assert "bad duration '10x'" in found[0][1]
    assert "unknown key 'max_retry'" in found[1][1]
    assert "unknown key 'nxt'" in found[2][1]
    assert "unknown key 'next'" in found[3][1]


STATE = "flow: d\nstart: a\nstates:\n  a:\n"


@pytest.mark.parametrize(
    ("body", "line", "col", "message", "hint"),
    [
        ("    say: hi\n\t  end: done\n", 6, 1, "line 6 is indented with a tab", "spaces, not tabs"),
        ("    say: Hours: 9 to 5\n    end: done\n", 5, 15, "contains ': '", 'say: "Hours: 9 to 5"'),
        ("    say: hi\n   end: done\n", 6, 4, "line 6 is indented 3 spaces", "4 spaces, like line 5"),
        ("    say: hi\n      end: done\n", 6, 10, "indented further than the key above", "line up the keys"),
        ('    say: "hi there\n    end: done\n', 7, 1, "the quote opened at line 5:10 is never closed",
         "same quote mark"),
        ("    say: hi\n    on: {ok: b\n    end: done\n", 7, 8, "the '{' opened at line 6:9 is not closed",
         "close it with '}'"),
        ("    say: {{ name }}, welcome\n    end: done\n", 5, 20, "a value starting with {{ must be in quotes",
         'say: "{{ name }}, welcome"'),
        ("    say: hi\n    - end: done\n", 6, 5, "a list item ('- ') is mixed into a mapping", "without the '-'"),
    ],
)
def test_yaml_syntax_errors_speak_the_owners_words(body: str, line: int, col: int, message: str, hint: str) -> None:
    with pytest.raises(FlowError) as info:
        load_flow_text(STATE + body, "s.yaml")
    (d,) = info.value.diagnostics
    assert (d.line, d.col) == (line, col), d.format()
    assert message in d.message and d.hint is not None and hint in d.hint, d.format()


@pytest.mark.parametrize(
    ("body", "col", "hint"),
    [("    say: {{ name }}\n    end: done\n", 10, 'say: "{{ name }}"'),
     ('    say: "hi"\n    voice: {say: {{ name }}}\n    end: done\n', 18, 'say: "{{ name }}"')],
)
def test_an_unquoted_template_that_parses_as_a_mapping_is_named(body: str, col: int, hint: str) -> None:
    with pytest.raises(FlowError) as info:
        load_flow_text(STATE.replace("start: a\n", "start: a\nvars: {name: x}\n") + body, "s.yaml")
    (d,) = info.value.diagnostics
    assert d.message == "a value starting with {{ must be in quotes" and d.hint is not None and hint in d.hint
    assert (d.line, d.col) == (6 if "voice" not in body else 7, col), d.format()
