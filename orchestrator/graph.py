"""Draw a flow: Mermaid, Graphviz dot, or a self-contained HTML page with an inline SVG.

The HTML page needs no network (no CDN): the diagram is laid out here, one row per BFS
depth from the start state, boxes showing each state's kind and name (end states show
their outcome), labelled arrows, and the Mermaid source underneath.

`state_edges` is also the validator's view of the flow's edges, so both agree on what
"goes to" means.
"""

from __future__ import annotations

import html
import sys
from collections import deque
from dataclasses import dataclass

from . import schema
from .errors import FlowError


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


def all_edges(flow: schema.Flow) -> list[Edge]:
    edges = [e for name, st in flow.states.items() for e in state_edges(name, st)]
    return edges + intent_edges(flow)


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

_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _MARGIN = 200, 46, 40, 80, 30
_COLORS = {"say": "#e8f1fb", "ask": "#fff4d6", "call": "#e6f6ea", "branch": "#f3e8fb",
           "handoff": "#fde8e8", "record": "#ececec", "end": "#dfe3e8"}


def _layout(flow: schema.Flow) -> dict[str, tuple[int, int]]:
    depth = depths(flow)
    last = max(depth.values(), default=-1) + 1
    rows: dict[int, list[str]] = {}
    for name in flow.states:
        rows.setdefault(depth.get(name, last), []).append(name)  # unreachable: bottom row
    pos: dict[str, tuple[int, int]] = {}
    for row, names in sorted(rows.items()):
        for col, name in enumerate(names):
            pos[name] = (_MARGIN + col * (_BOX_W + _GAP_X), _MARGIN + row * (_BOX_H + _GAP_Y))
    return pos


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_svg(flow: schema.Flow) -> str:
    pos = _layout(flow)
    width = max((x for x, _ in pos.values()), default=0) + _BOX_W + 2 * _MARGIN
    height = max((y for _, y in pos.values()), default=0) + _BOX_H + 2 * _MARGIN
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>']
    for e in (e for name, st in flow.states.items() for e in state_edges(name, st)):
        if e.source not in pos or e.target not in pos:
            continue
        (x1, y1), (x2, y2) = pos[e.source], pos[e.target]
        sx: float = x1 + _BOX_W / 2
        sy: float = y1 + _BOX_H
        tx: float = x2 + _BOX_W / 2
        ty: float = y2
        if y2 <= y1:  # going back up (a loop): leave from the side, curve around
            sx, sy, tx, ty = x1 + _BOX_W, y1 + _BOX_H / 2, x2 + _BOX_W, y2 + _BOX_H / 2
            bend = max(abs(sy - ty) / 3, 30)
            d = f"M {sx} {sy} C {sx + bend} {sy}, {tx + bend} {ty}, {tx} {ty}"
            lx, ly = max(sx, tx) + bend * 0.75, (sy + ty) / 2
        else:
            mid = (sy + ty) / 2
            d = f"M {sx} {sy} C {sx} {mid}, {tx} {mid}, {tx} {ty}"
            lx, ly = (sx + tx) / 2, mid
        parts.append(f'<path class="edge" d="{d}" fill="none" stroke="#555" marker-end="url(#arrow)"/>')
        parts.append(f'<text class="edge-label" x="{lx:.0f}" y="{ly:.0f}" text-anchor="middle" fill="#333" '
                     f'font-size="10"><title>{html.escape(e.label)}</title>{html.escape(_clip(e.label, 28))}</text>')
    for name, state in flow.states.items():
        x, y = pos[name]
        kind = state_kind(state)
        outcome = _outcome(state)
        stroke = 'stroke="#333" stroke-width="2"' if outcome else 'stroke="#888"'
        start = ' stroke-dasharray="4 2"' if name == flow.start else ""
        parts.append(f'<g class="state" data-state="{html.escape(name)}"><rect x="{x}" y="{y}" width="{_BOX_W}" '
                     f'height="{_BOX_H}" rx="8" fill="{_COLORS.get(kind, "#fff")}" {stroke}{start}/>')
        parts.append(f'<text x="{x + 8}" y="{y + 17}" fill="#666" font-size="10">'
                     f'{html.escape(kind)}{" (start)" if name == flow.start else ""}</text>')
        parts.append(f'<text x="{x + 8}" y="{y + 33}" font-weight="bold"><title>{html.escape(name)}</title>'
                     f'{html.escape(_clip(name, 26))}</text>')
        if outcome:
            parts.append(f'<text x="{x + _BOX_W - 8}" y="{y + 17}" text-anchor="end" fill="#a33" font-size="10">'
                         f'end: {html.escape(outcome)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


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
        ".diagram{overflow:auto;border:1px solid #ddd;padding:8px}pre{background:#f6f6f6;padding:12px}</style>\n"
        "</head>\n<body>\n"
        f"<h1>{title}</h1>\n<p>Flow <code>{html.escape(flow.flow)}</code>, starts at "
        f"<code>{html.escape(flow.start)}</code>, {len(flow.states)} states.</p>\n"
        f"<div class=\"diagram\">\n{to_svg(flow)}\n</div>\n{intents_html}\n"
        f"<details><summary>Mermaid source</summary><pre>{html.escape(to_mermaid(flow))}</pre></details>\n"
        "</body>\n</html>\n"
    )


FORMATS = {"mermaid": to_mermaid, "dot": to_dot, "html": to_html}


def main_graph(path: str, fmt: str = "mermaid") -> int:
    """`orchestrator graph FILE --format mermaid|dot|html`: print the diagram."""
    from .loader import load_flow

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
