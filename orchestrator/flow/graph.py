"""Draw a flow: Mermaid, Graphviz dot, or a self-contained HTML page with an inline SVG.

The HTML page needs no network (no CDN, no JS library): the diagram is laid out here
(graph_layout: layers, barycenter ordering, edges curved through the gaps, back edges along
the sides), boxes show each state's kind and name (end states their outcome), parallel
edges are one arrow labelled "talk, fail", labels sit on a white background where no box or
other label is, global intents are dashed arrows from an "any question" box; a few lines of
inline JS pan and zoom; the Mermaid source is underneath.

`state_edges` is also the validator's view of the flow's edges, so both agree on what
"goes to" means.
"""

from __future__ import annotations

import html
import sys
from collections import deque
from dataclasses import dataclass

from orchestrator.errors import FlowError
from orchestrator.flow import schema
from orchestrator.flow.graph_layout import BOX_H, Layout, LayoutEdge, Route, layout


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    label: str  # next | ok | fail | a choice id | when-expression | intent:<name>
    path: str  # `$.states.book.on.ok`: where the target is written


def state_kind(state: schema.State) -> str:
    return str(state.__struct_config__.tag)


def state_edges(name: str, state: schema.State) -> list[Edge]:
    """The edges written on one state, in source order."""
    base = f"$.states.{name}"
    edges: list[Edge] = []
    if isinstance(state, schema.BranchState):
        for i, case in enumerate(state.branch):
            label = case.when if case.when else "otherwise"
            edges.append(Edge(name, case.goto, label, f"{base}.branch[{i}].goto"))
        return edges
    nxt = getattr(state, "next", None)
    if nxt:
        edges.append(Edge(name, nxt, "next", f"{base}.next"))
    for key, target in (getattr(state, "on", None) or {}).items():
        edges.append(Edge(name, target, key, f"{base}.on.{key}"))
    return edges


def intent_edges(flow: schema.Flow) -> list[Edge]:
    """Global intents as edges from every ask state."""
    asks = [n for n, s in flow.states.items() if isinstance(s, schema.AskState)]
    return [
        Edge(ask, intent.goto, f"intent:{iname}", f"$.intents.{iname}.goto")
        for iname, intent in flow.intents.items()
        for ask in asks
    ]


def default_edges(flow: schema.Flow) -> list[Edge]:
    """`defaults: {fail, timeout, stuck, error}` as edges from every state that does not route them."""
    d = flow.defaults
    edges: list[Edge] = []
    for name, state in flow.states.items():
        on = getattr(state, "on", None) or {}
        if isinstance(state, schema.AskState):
            wanted = [("fail", d.fail), ("timeout", d.timeout), ("stuck", d.stuck)]
        elif isinstance(state, schema.CallState):
            wanted = [("error", d.error)]
        else:
            continue
        edges += [Edge(name, target, key, f"$.defaults.{key}") for key, target in wanted
                  if target and key not in on]
    return edges


def all_edges(flow: schema.Flow) -> list[Edge]:
    edges = [e for name, st in flow.states.items() for e in state_edges(name, st)]
    return edges + default_edges(flow) + intent_edges(flow)


def depths(flow: schema.Flow) -> dict[str, int]:
    """BFS depth of every state reachable from start (intents included)."""
    out: dict[str, list[str]] = {}
    for e in all_edges(flow):
        out.setdefault(e.source, []).append(e.target)
    seen = {flow.start: 0} if flow.start in flow.states else {}
    queue = deque(seen)
    while queue:
        node = queue.popleft()
        for target in out.get(node, []):
            if target in flow.states and target not in seen:
                seen[target] = seen[node] + 1
                queue.append(target)
    return seen


def _outcome(state: schema.State) -> str | None:
    end = getattr(state, "end", None)
    return str(end) if end else None


def _box_text(name: str, state: schema.State) -> str:
    kind = state_kind(state)
    outcome = _outcome(state)
    return f"{kind}: {name}" + (f" [end: {outcome}]" if outcome else "")


def _intent_summary(flow: schema.Flow) -> list[tuple[str, str]]:
    return [(f"intent:{n}", i.goto) for n, i in flow.intents.items()]


# -- Mermaid ----------------------------------------------------------------------------------


def _mermaid_id(name: str) -> str:
    return "s_" + "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;").replace("\n", " ")


def to_mermaid(flow: schema.Flow) -> str:
    lines = ["flowchart TD", f'    start_(("start")) --> {_mermaid_id(flow.start)}']
    for name, state in flow.states.items():
        text = _mermaid_text(_box_text(name, state))
        shape = f'(["{text}"])' if _outcome(state) else f'["{text}"]'
        if isinstance(state, schema.BranchState):
            shape = f'{{"{text}"}}'
        lines.append(f"    {_mermaid_id(name)}{shape}")
    for e in (e for name, st in flow.states.items() for e in state_edges(name, st)):
        lines.append(f'    {_mermaid_id(e.source)} -->|"{_mermaid_text(e.label)}"| {_mermaid_id(e.target)}')
    for label, target in _intent_summary(flow):
        lines.append(f'    any_ask(["any question"]) -.->|"{_mermaid_text(label)}"| {_mermaid_id(target)}')
    return "\n".join(lines) + "\n"


# -- Graphviz dot -----------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def to_dot(flow: schema.Flow) -> str:
    title = flow.title or flow.flow
    lines = [f"digraph {_dot_quote(flow.flow)} {{", f"  label={_dot_quote(title)};", "  rankdir=TB;",
             '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  "__start" [shape=circle, label="start"];', f'  "__start" -> {_dot_quote(flow.start)};']
    for name, state in flow.states.items():
        shape = "diamond" if isinstance(state, schema.BranchState) else (
            "doubleoctagon" if _outcome(state) else "box")
        lines.append(f"  {_dot_quote(name)} [label={_dot_quote(_box_text(name, state))}, shape={shape}];")
    for e in (e for name, st in flow.states.items() for e in state_edges(name, st)):
        lines.append(f"  {_dot_quote(e.source)} -> {_dot_quote(e.target)} [label={_dot_quote(e.label)}];")
    if flow.intents:
        lines.append('  "__any_ask" [shape=note, label="any question"];')
        for label, target in _intent_summary(flow):
            lines.append(f'  "__any_ask" -> {_dot_quote(target)} [label={_dot_quote(label)}, style=dashed];')
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- HTML + SVG -------------------------------------------------------------------------------

ANY = "\0any question"  # the pseudo-node global intents leave from (never a state name: YAML keys are text)
_COLORS = {"say": "#e8f1fb", "ask": "#fff4d6", "call": "#e6f6ea", "branch": "#f3e8fb",
           "handoff": "#fde8e8", "record": "#ececec", "end": "#dfe3e8"}
_LABEL_H = 14.0


def _label_width(text: str) -> float:
    return 5.6 * len(text) + 10


def _box_width(name: str, state: schema.State | None) -> float:
    if state is None:
        return 130.0
    outcome = _outcome(state)
    top = len(state_kind(state)) + 8 + (len(f"end: {outcome}") + 4 if outcome else 0)  # "ask (start)  end: x"
    return max(120.0, min(240.0, max(7.4 * len(_clip(name, 30)), 5.8 * top) + 20))


def _merged_edges(flow: schema.Flow) -> list[LayoutEdge]:
    """One edge per (source, target): parallel edges share it, labels joined ("talk, fail")."""
    merged: dict[tuple[str, str], list[str]] = {}
    for e in (e for name, st in flow.states.items() for e in state_edges(name, st)):
        merged.setdefault((e.source, e.target), []).append(e.label)
    edges = [LayoutEdge(a, b, ", ".join(dict.fromkeys(labels))) for (a, b), labels in merged.items()]
    intents: dict[str, list[str]] = {}
    for iname, intent in flow.intents.items():
        intents.setdefault(intent.goto, []).append(iname)
    edges += [LayoutEdge(ANY, target, ", ".join(names), dashed=True) for target, names in intents.items()]
    return edges


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


class _Obstacles:
    """Rectangles bucketed on a coarse grid: a label only measures its overlap with the boxes
    and labels near it (placing every label of a large flow stays linear, not quadratic)."""

    CELL = 256.0

    def __init__(self, rects: list[tuple[float, float, float, float]]) -> None:
        self._cells: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}
        for rect in rects:
            self.append(rect)

    def _keys(self, r: tuple[float, float, float, float]) -> list[tuple[int, int]]:
        c = self.CELL
        return [(i, j) for i in range(int(r[0] // c), int(r[2] // c) + 1)
                for j in range(int(r[1] // c), int(r[3] // c) + 1)]

    def append(self, rect: tuple[float, float, float, float]) -> None:
        for key in self._keys(rect):
            self._cells.setdefault(key, []).append(rect)

    def overlap(self, rect: tuple[float, float, float, float]) -> float:
        near = {o for key in self._keys(rect) for o in self._cells.get(key, ())}
        return sum(_overlap(rect, o) for o in near)


def _place_labels(lay: Layout) -> list[tuple[Route, float, float, float]]:
    """Each route's label centre (x, y) and width: the first candidate point that overlaps no
    box and no label already placed, else the least overlapping one (never the same point twice)."""
    obstacles = _Obstacles(lay.boxes())
    placed: list[tuple[Route, float, float, float]] = []
    taken: set[tuple[int, int]] = set()
    for route in sorted(lay.routes, key=lambda r: (r.back, len(r.labels))):
        w = _label_width(_clip(route.edge.label, 28))
        best: tuple[float, float, float] | None = None
        for x, y in route.labels:
            rect = (x - w / 2 - 1, y - _LABEL_H / 2 - 1, x + w / 2 + 1, y + _LABEL_H / 2 + 1)
            cost = obstacles.overlap(rect)
            if (round(x), round(y)) in taken:
                cost += 1e6
            if best is None or cost < best[2]:
                best = (x, y, cost)
            if cost == 0:
                break
        assert best is not None
        x, y = best[0], best[1]
        while (round(x), round(y)) in taken:
            y += _LABEL_H
        taken.add((round(x), round(y)))
        obstacles.append((x - w / 2, y - _LABEL_H / 2, x + w / 2, y + _LABEL_H / 2))
        placed.append((route, x, y, w))
    return placed


def _layout(flow: schema.Flow) -> Layout:
    edges = _merged_edges(flow)
    widths = {name: _box_width(name, st) for name, st in flow.states.items()}
    order = list(flow.states)
    if flow.intents:
        widths[ANY] = _box_width(ANY, None)
        order.append(ANY)
    roots = [flow.start] if flow.start in flow.states else []
    return layout(order, widths, edges, [*roots, *([ANY] if flow.intents else [])])


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_svg(flow: schema.Flow) -> str:
    lay = _layout(flow)
    labels = _place_labels(lay)
    x_min = min([0.0, *(x - w / 2 - 4 for _, x, _, w in labels)])
    x_max = max([lay.width, *(x + w / 2 + 4 for _, x, _, w in labels)])
    width, height = x_max - x_min, lay.height
    parts = [f'<svg id="diagram" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="{x_min:.0f} 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" '
             'font-size="12">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker>'
             '<marker id="arrow-back" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8a6d3b"/></marker>'
             '<marker id="arrow-intent" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#7a5ea8"/></marker></defs>']
    for route in lay.routes:
        e = route.edge
        if e.dashed:
            style = 'stroke="#7a5ea8" stroke-dasharray="5 3" marker-end="url(#arrow-intent)"'
        elif route.back:
            style = 'stroke="#8a6d3b" marker-end="url(#arrow-back)"'
        else:
            style = 'stroke="#555" marker-end="url(#arrow)"'
        source = "any question" if e.source == ANY else e.source
        parts.append(f'<path class="edge{" back" if route.back else ""}" d="{route.d}" fill="none" {style}>'
                     f'<title>{html.escape(source)} &#8594; {html.escape(e.target)}: {html.escape(e.label)}'
                     "</title></path>")
    for name, node in lay.nodes.items():
        if node.dummy:
            continue
        x, y = node.x - node.width / 2, node.y
        w = node.width
        if name == ANY:
            parts.append(f'<g class="intents"><rect x="{x:.1f}" y="{y:.1f}" width="{w:.0f}" '
                         f'height="{BOX_H:.0f}" rx="8" fill="#f4effb" stroke="#7a5ea8" stroke-dasharray="5 3"/>'
                         f'<text x="{x + 8:.1f}" y="{y + 17:.1f}" fill="#7a5ea8" font-size="10">global intents</text>'
                         f'<text x="{x + 8:.1f}" y="{y + 33:.1f}" font-weight="bold">any question</text></g>')
            continue
        state = flow.states[name]
        kind = state_kind(state)
        outcome = _outcome(state)
        stroke = 'stroke="#333" stroke-width="2"' if outcome else 'stroke="#888"'
        start = ' stroke-dasharray="4 2"' if name == flow.start else ""
        fill = _COLORS.get(kind, "#fff")
        parts.append(f'<g class="state" data-state="{html.escape(name)}"><rect x="{x:.1f}" y="{y:.1f}" '
                     f'width="{w:.0f}" height="{BOX_H:.0f}" rx="8" fill="{fill}" {stroke}{start}/>')
        parts.append(f'<text x="{x + 8:.1f}" y="{y + 17:.1f}" fill="#666" font-size="10">'
                     f'{html.escape(kind)}{" (start)" if name == flow.start else ""}</text>')
        parts.append(f'<text x="{x + 8:.1f}" y="{y + 33:.1f}" font-weight="bold"><title>{html.escape(name)}</title>'
                     f'{html.escape(_clip(name, 30))}</text>')
        if outcome:
            parts.append(f'<text x="{x + w - 8:.1f}" y="{y + 17:.1f}" text-anchor="end" fill="#a33" '
                         f'font-size="10">end: {html.escape(outcome)}</text>')
        parts.append("</g>")
    for route, x, y, w in labels:
        text = _clip(route.edge.label, 28)
        color = "#7a5ea8" if route.edge.dashed else ("#8a6d3b" if route.back else "#333")
        parts.append(f'<rect class="edge-label-bg" x="{x - w / 2:.1f}" y="{y - _LABEL_H / 2:.1f}" width="{w:.1f}" '
                     f'height="{_LABEL_H:.0f}" rx="3" fill="#fff" fill-opacity="0.92"/>')
        parts.append(f'<text class="edge-label" x="{x:.1f}" y="{y + 3.5:.1f}" text-anchor="middle" fill="{color}" '
                     f'font-size="10"><title>{html.escape(route.edge.label)}</title>{html.escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


_PAN_ZOOM = """<script>
(() => {
  const svg = document.getElementById("diagram");
  if (!svg) return;
  const box = svg.viewBox.baseVal, full = [box.x, box.y, box.width, box.height];
  const w0 = svg.width.baseVal.value, h0 = svg.height.baseVal.value;
  let scale = 1;
  const zoom = (f) => {
    scale = Math.min(4, Math.max(0.25, scale * f));
    svg.setAttribute("width", w0 * scale); svg.setAttribute("height", h0 * scale);
  };
  document.getElementById("zoom-in").onclick = () => zoom(1.25);
  document.getElementById("zoom-out").onclick = () => zoom(0.8);
  document.getElementById("zoom-fit").onclick = () => {
    const pane = svg.parentElement; scale = 1; zoom(Math.min(pane.clientWidth / w0, 1));
    box.x = full[0]; box.y = full[1];
  };
  svg.parentElement.addEventListener("wheel", (ev) => {
    if (!ev.ctrlKey && !ev.metaKey) return;
    ev.preventDefault(); zoom(ev.deltaY < 0 ? 1.1 : 0.9);
  }, {passive: false});
  let drag = null;
  const pane = svg.parentElement;
  pane.addEventListener("mousedown", (ev) => { drag = [ev.clientX, ev.clientY, pane.scrollLeft, pane.scrollTop]; });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    pane.scrollLeft = drag[2] - (ev.clientX - drag[0]); pane.scrollTop = drag[3] - (ev.clientY - drag[1]);
  });
})();
</script>"""


def to_html(flow: schema.Flow) -> str:
    title = html.escape(flow.title or flow.flow)
    intents = "".join(
        f"<li><b>{html.escape(n)}</b> ({html.escape(', '.join(i.match) or '-')}"
        f"{', key ' + html.escape(i.dtmf) if i.dtmf else ''}) &rarr; {html.escape(i.goto)}</li>"
        for n, i in flow.intents.items()
    )
    intents_html = f"<h2>Global intents (from any question)</h2><ul>{intents}</ul>" if intents else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{title} ({html.escape(flow.flow)})</title>\n"
        "<style>body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222}"
        ".diagram{overflow:auto;border:1px solid #ddd;padding:8px;cursor:grab;max-height:85vh}"
        "pre{background:#f6f6f6;padding:12px}</style>\n"
        "</head>\n<body>\n"
        f"<h1>{title}</h1>\n<p>Flow <code>{html.escape(flow.flow)}</code>, starts at "
        f"<code>{html.escape(flow.start)}</code>, {len(flow.states)} states.</p>\n"
        "<p class=\"tools\"><button id=\"zoom-in\">+</button> <button id=\"zoom-out\">&minus;</button> "
        "<button id=\"zoom-fit\">fit</button> <small>drag to pan, Ctrl + wheel to zoom; brown arrows go back "
        "to an earlier state, dashed purple ones are global intents</small></p>\n"
        f"<div class=\"diagram\">\n{to_svg(flow)}\n</div>\n{intents_html}\n"
        f"<details><summary>Mermaid source</summary><pre>{html.escape(to_mermaid(flow))}</pre></details>\n"
        f"{_PAN_ZOOM}\n</body>\n</html>\n"
    )


FORMATS = {"mermaid": to_mermaid, "dot": to_dot, "html": to_html}


def main_graph(path: str, fmt: str = "mermaid") -> int:
    """`orchestrator graph FILE --format mermaid|dot|html`: print the diagram."""
    from orchestrator.flow.loader import load_flow

    render = FORMATS.get(fmt)
    if render is None:
        print(f"unknown format {fmt!r}; use one of: {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    try:
        loaded = load_flow(path)
    except FlowError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(render(loaded.flow))
    return 0
