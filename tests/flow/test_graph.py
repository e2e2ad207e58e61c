"""Diagrams: mermaid edges with labels, dot text, a self-contained HTML page with an SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator import schema
from orchestrator.graph import all_edges, depths, main_graph, to_dot, to_html, to_mermaid, to_svg
from orchestrator.loader import load_flow, load_flow_text

from .conftest import FLOWS

TEXT = """\
flow: demo
title: Demo <Dental> & Co
start: menu
intents:
  agent: {match: [agent], goto: staff}
states:
  menu:
    ask: Book?
    choices: {book: {label: Book}}
    on: {book: find, fail: staff}
  find:
    call: calendar.find_slots
    on: {ok: route, error: staff}
  route:
    branch:
      - {when: "contact.known", goto: done}
      - {goto: menu}
  done: {say: Bye, end: booked}
  staff: {handoff: "+15555550199", end: handed_off}
"""


@pytest.fixture
def flow() -> schema.Flow:
    return load_flow_text(TEXT).flow


def test_mermaid_has_labelled_edges_and_end_outcomes(flow: schema.Flow) -> None:
    text = to_mermaid(flow)
    assert text.startswith("flowchart TD\n")
    assert 's_menu -->|"book"| s_find' in text
    assert 's_menu -->|"fail"| s_staff' in text
    assert 's_find -->|"ok"| s_route' in text
    assert 's_route -->|"contact.known"| s_done' in text
    assert 's_route -->|"otherwise"| s_menu' in text
    assert 'any_ask(["any question"]) -.->|"intent:agent"| s_staff' in text
    assert "say: done [end: booked]" in text
    assert 'start_(("start")) --> s_menu' in text


def test_dot_is_a_digraph_with_labelled_arrows(flow: schema.Flow) -> None:
    text = to_dot(flow)
    assert text.startswith('digraph "demo" {') and text.rstrip().endswith("}")
    assert '"menu" -> "find" [label="book"];' in text
    assert '"route" -> "done" [label="contact.known"];' in text
    assert text.count("->") == len([e for e in all_edges(flow) if not e.label.startswith("intent:")]) + 2
    assert text.count("{") == text.count("}")


def test_html_is_a_full_offline_page_with_svg(flow: schema.Flow) -> None:
    page = to_html(flow)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<svg" in page and "<details>" in page
    assert not re.search(r"<script|https?://(?!www\.w3\.org/2000/svg)", page), "must not need the network"
    assert "Demo &lt;Dental&gt; &amp; Co" in page
    svg = ET.fromstring(to_svg(flow))  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    states = {g.get("data-state") for g in svg.iterfind(".//s:g", ns)}
    assert states == set(flow.states)
    labels = [t.findtext("s:title", namespaces=ns) for t in svg.iterfind(".//s:text", ns)
              if t.get("class") == "edge-label"]
    assert sorted(labels) == sorted(e.label for e in all_edges(flow) if not e.label.startswith("intent:"))
    assert "end: booked" in [t.text for t in svg.iterfind(".//s:text", ns)]


def test_layers_follow_bfs_depth(flow: schema.Flow) -> None:
    assert depths(flow) == {"menu": 0, "find": 1, "staff": 1, "route": 2, "done": 3}
    svg = ET.fromstring(to_svg(flow))
    ns = {"s": "http://www.w3.org/2000/svg"}
    y = {g.get("data-state"): float(g.find("s:rect", ns).get("y", "nan")) for g in svg.iterfind(".//s:g", ns)}
    assert y["menu"] < y["find"] == y["staff"] < y["route"] < y["done"]


@pytest.mark.parametrize("path", FLOWS, ids=[p.name for p in FLOWS])
@pytest.mark.parametrize("fmt", ["mermaid", "dot", "html"])
def test_main_graph_on_shipped_flows(path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_graph(str(path), fmt) == 0
    out = capsys.readouterr().out
    for name in load_flow(path).flow.states:
        assert name in out


def test_main_graph_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: x\n")
    assert main_graph(str(bad), "mermaid") == 1
    assert "missing the required key" in capsys.readouterr().err
    assert main_graph(str(bad), "png") == 2
