"""Diagrams: mermaid edges with labels, dot text, a self-contained HTML page with an SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from orchestrator.flow import schema
from orchestrator.flow.graph import all_edges, depths, main_graph, to_dot, to_html, to_mermaid, to_svg
from orchestrator.flow.loader import load_flow, load_flow_text

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
    assert not re.search(r"<script[^>]*src|https?://(?!www\.w3\.org/2000/svg)", page), "must not need the network"
    assert "Demo &lt;Dental&gt; &amp; Co" in page
    svg = ET.fromstring(to_svg(flow))  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    groups = list(svg.iterfind(".//s:g", ns))
    assert {g.get("data-state") for g in groups if g.get("data-state")} == set(flow.states)
    assert [g.get("class") for g in groups if not g.get("data-state")] == ["intents"]  # "any question"
    labels = [t.findtext("s:title", namespaces=ns) for t in svg.iterfind(".//s:text", ns)
              if t.get("class") == "edge-label"]
    drawn = sorted(part for label in labels for part in (label or "").split(", "))
    assert drawn == sorted([e.label for e in all_edges(flow) if not e.label.startswith("intent:")] + ["agent"])
    assert "fail, error" not in labels  # menu->staff (fail) and find->staff (error) are different pairs
    assert "end: booked" in [t.text for t in svg.iterfind(".//s:text", ns)]


def _geometry(flow: schema.Flow) -> tuple[dict[str, tuple[float, float, float, float]], list[ET.Element]]:
    svg = ET.fromstring(to_svg(flow))
    ns = {"s": "http://www.w3.org/2000/svg"}
    boxes = {}
    for g in svg.iterfind(".//s:g", ns):
        r = g.find("s:rect", ns)
        assert r is not None
        x, y, w, h = (float(r.get(k, "nan")) for k in ("x", "y", "width", "height"))
        boxes[g.get("data-state") or "any question"] = (x, y, x + w, y + h)
    return boxes, list(svg.iterfind(".//s:text", ns))


def test_forward_edges_go_down_a_layer_and_back_edges_are_marked(flow: schema.Flow) -> None:
    boxes, _ = _geometry(flow)
    assert depths(flow) == {"menu": 0, "find": 1, "staff": 1, "route": 2, "done": 3}
    top = {name: box[1] for name, box in boxes.items()}
    assert top["menu"] < top["find"] < top["route"] < top["done"]  # longest path: staff under find
    assert top["find"] < top["staff"]
    html = to_svg(flow)
    assert html.count('class="edge back"') == 1  # route -> menu loops back, drawn along the side


def test_no_two_boxes_overlap_and_labels_avoid_boxes() -> None:
    for path in FLOWS:
        flow = load_flow(path).flow
        boxes, texts = _geometry(flow)
        items = list(boxes.values())
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (path.name, a, b)
        points = [(float(t.get("x", 0)), float(t.get("y", 0))) for t in texts if t.get("class") == "edge-label"]
        assert len(points) == len(set(points)), path.name
        for x, y in points:
            inside = [n for n, (x0, y0, x1, y1) in boxes.items() if x0 < x < x1 and y0 < y - 3 < y1]
            assert not inside, (path.name, x, y, inside)


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
