"""A layered (Sugiyama-style) layout of a directed graph for the HTML/SVG diagram.

Steps: back edges found by a DFS from the roots are set aside (they are drawn along the
left or right side of the diagram); the remaining DAG gets longest-path layers; edges
spanning several layers get one invisible dummy node per layer they cross, so they run
through the gaps between boxes instead of through boxes; nodes are ordered within their
layer by barycenter sweeps (the order with the fewest crossings wins); x positions come
from a weighted isotonic regression (each node as close as possible to the mean of its
neighbours, never overlapping); finally every edge becomes a route: cubic béziers in the
gaps for forward edges, a rounded orthogonal path along a side lane for back edges, each
with a few candidate label points for the label placer.

Pure geometry: no SVG here (see graph.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

BOX_H = 46.0
GAP_Y = 96.0  # vertical gap between layers: room for curves, labels and side-lane turns
GAP_X = 36.0  # between two boxes of a layer
DUMMY_W = 14.0  # the width a dummy (an edge passing a layer) takes
LANE_GAP = 13.0  # between two side lanes of back edges
MARGIN = 24.0
SWEEPS = 12  # barycenter sweeps (down + up) when ordering the layers
# Dummy nodes for long edges grow with (edges x layers spanned): in a 2,000-state chain where
# every state has a `fail:` route to one last state that is ~2 million. Past this many, the
# longest edges are drawn straight from source to target (they may cross boxes) so the
# layout stays near-linear in the flow's size.
MAX_DUMMIES = 20_000


@dataclass(slots=True)
class Node:
    id: str
    width: float
    dummy: bool = False
    layer: int = 0
    x: float = 0.0  # centre
    y: float = 0.0  # top


@dataclass(slots=True)
class LayoutEdge:
    source: str
    target: str
    label: str
    dashed: bool = False


@dataclass(slots=True)
class Route:
    edge: LayoutEdge
    d: str  # the SVG path data
    labels: list[tuple[float, float]]  # candidate label centres, best first
    back: bool = False


@dataclass(slots=True)
class Layout:
    nodes: dict[str, Node]
    routes: list[Route]
    width: float
    height: float
    layers: list[list[str]] = field(default_factory=list)

    def boxes(self) -> list[tuple[float, float, float, float]]:
        """The real nodes' boxes as (x0, y0, x1, y1)."""
        return [(n.x - n.width / 2, n.y, n.x + n.width / 2, n.y + BOX_H) for n in self.nodes.values() if not n.dummy]


def _back_edges(order: Sequence[str], edges: Sequence[LayoutEdge], roots: Sequence[str]) -> set[int]:
    """Indices of the edges that close a cycle in a DFS from `roots` (then from any node left)."""
    out: dict[str, list[int]] = {}
    for i, e in enumerate(edges):
        out.setdefault(e.source, []).append(i)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[int] = set()
    for root in [*roots, *order]:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, k = stack[-1]
            targets = out.get(node, [])
            if k == len(targets):
                state[node] = 2
                stack.pop()
                continue
            stack[-1] = (node, k + 1)
            i = targets[k]
            target = edges[i].target
            if state.get(target) == 1:
                back.add(i)
            elif target not in state:
                state[target] = 1
                stack.append((target, 0))
    return back


def _longest_path_layers(order: Sequence[str], forward: Sequence[LayoutEdge]) -> dict[str, int]:
    preds: dict[str, list[str]] = {n: [] for n in order}
    for e in forward:
        preds[e.target].append(e.source)
    layer: dict[str, int] = {}

    def visit(node: str) -> int:
        todo = [node]
        while todo:
            top = todo[-1]
            missing = [p for p in preds[top] if p not in layer]
            if missing:
                todo.extend(missing)
                continue
            todo.pop()
            layer[top] = max((layer[p] + 1 for p in preds[top]), default=0)
        return layer[node]

    for n in order:
        visit(n)
    return layer


def _crossings(upper: list[str], lower: list[str], down: dict[str, list[str]]) -> int:
    """Edge crossings between two adjacent layers: the inversions of the lower ends once the
    edges are sorted by their upper end, counted with a Fenwick tree (E log V, not E^2)."""
    pos = {n: i for i, n in enumerate(lower)}
    pairs = sorted((i, pos[t]) for i, n in enumerate(upper) for t in down.get(n, []) if t in pos)
    size = len(lower)
    tree = [0] * (size + 1)
    crossings = 0
    for seen, (_, low) in enumerate(pairs):
        k, at_most = low + 1, 0  # how many earlier edges end at or left of `low`
        while k > 0:
            at_most += tree[k]
            k -= k & -k
        crossings += seen - at_most
        k = low + 1
        while k <= size:
            tree[k] += 1
            k += k & -k
    return crossings


def _order_layers(layers: list[list[str]], down: dict[str, list[str]], up: dict[str, list[str]]) -> list[list[str]]:
    def total(ls: list[list[str]]) -> int:
        return sum(_crossings(ls[i], ls[i + 1], down) for i in range(len(ls) - 1))

    best = [list(layer) for layer in layers]
    best_count = total(best)
    current = [list(layer) for layer in layers]
    for sweep in range(SWEEPS):
        rng = range(1, len(current)) if sweep % 2 == 0 else range(len(current) - 2, -1, -1)
        for i in rng:
            ref = current[i - 1] if sweep % 2 == 0 else current[i + 1]
            neighbours = up if sweep % 2 == 0 else down
            pos = {n: k for k, n in enumerate(ref)}

            def key(item: tuple[int, str], neighbours: dict[str, list[str]] = neighbours,
                    pos: dict[str, int] = pos) -> float:
                k, n = item
                near = [pos[m] for m in neighbours.get(n, []) if m in pos]
                return sum(near) / len(near) if near else float(k)

            current[i] = [n for _, n in sorted(enumerate(current[i]), key=key)]
        count = total(current)
        if count < best_count:
            best, best_count = [list(layer) for layer in current], count
    return best


def _pava(desired: list[float], weights: list[float], gaps: list[float]) -> list[float]:
    """x minimising sum w_i (x_i - d_i)^2 with x_{i+1} - x_i >= gaps[i] (pool adjacent violators)."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    blocks: list[list[float]] = []  # [weighted mean, weight, count]
    for d, w, c in zip(desired, weights, offsets, strict=True):
        blocks.append([d - c, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    out: list[float] = []
    for mean, _, count in blocks:
        out.extend([mean] * int(count))
    return [y + c for y, c in zip(out, offsets, strict=True)]


def _separation(a: Node, b: Node) -> float:
    gap = GAP_X if not (a.dummy or b.dummy) else (DUMMY_W if a.dummy and b.dummy else GAP_X / 2)
    return (a.width + b.width) / 2 + gap


def _place_x(layers: list[list[str]], nodes: dict[str, Node], down: dict[str, list[str]],
             up: dict[str, list[str]]) -> None:
    for layer in layers:
        x = 0.0
        for i, n in enumerate(layer):
            if i:
                x += _separation(nodes[layer[i - 1]], nodes[n])
            nodes[n].x = x

    def weight(a: Node, b: Node) -> float:
        return 8.0 if a.dummy and b.dummy else (2.0 if a.dummy or b.dummy else 1.0)

    for sweep in range(10):
        indices = list(range(len(layers))) if sweep % 2 == 0 else list(range(len(layers) - 1, -1, -1))
        for i in indices:
            layer = layers[i]
            desired: list[float] = []
            weights: list[float] = []
            for n in layer:
                node = nodes[n]
                near = ([*up.get(n, []), *down.get(n, [])] if sweep >= 6
                        else up.get(n, []) if sweep % 2 == 0 else down.get(n, []))
                if near:
                    ws = [weight(node, nodes[m]) for m in near]
                    desired.append(sum(nodes[m].x * w for m, w in zip(near, ws, strict=True)) / sum(ws))
                    weights.append(sum(ws))
                else:
                    desired.append(node.x)
                    weights.append(0.5)
            gaps = [_separation(nodes[layer[k]], nodes[layer[k + 1]]) for k in range(len(layer) - 1)]
            for n, x in zip(layer, _pava(desired, weights, gaps), strict=True):
                nodes[n].x = x


def _spread(count: int, width: float) -> list[float]:
    """Offsets of `count` ports along a box side of `width`, centred."""
    if count <= 1:
        return [0.0]
    step = min(16.0, (width - 24) / (count - 1))
    return [(k - (count - 1) / 2) * step for k in range(count)]


def _bezier(p: tuple[float, float], q: tuple[float, float]) -> tuple[str, list[tuple[float, float]]]:
    """A vertical-tangent cubic from p down to q, and points on it at t = .5, .35, .65, .2, .8."""
    (x0, y0), (x1, y1) = p, q
    dy = (y1 - y0) / 2
    c1, c2 = (x0, y0 + dy), (x1, y1 - dy)

    def at(t: float) -> tuple[float, float]:
        s = 1 - t
        return (s ** 3 * x0 + 3 * s * s * t * c1[0] + 3 * s * t * t * c2[0] + t ** 3 * x1,
                s ** 3 * y0 + 3 * s * s * t * c1[1] + 3 * s * t * t * c2[1] + t ** 3 * y1)

    d = f"C {c1[0]:.1f} {c1[1]:.1f}, {c2[0]:.1f} {c2[1]:.1f}, {x1:.1f} {y1:.1f}"
    return d, [at(t) for t in (0.5, 0.35, 0.65, 0.2, 0.8)]


def _orthogonal(points: list[tuple[float, float]], radius: float = 10.0) -> str:
    """`M ... L ... Q ...`: a polyline with rounded corners."""
    d = [f"M {points[0][0]:.1f} {points[0][1]:.1f}"]
    for k in range(1, len(points) - 1):
        (ax, ay), (bx, by), (cx, cy) = points[k - 1], points[k], points[k + 1]
        r1 = min(radius, abs(bx - ax) / 2 + abs(by - ay) / 2)
        r2 = min(radius, abs(cx - bx) / 2 + abs(cy - by) / 2)
        ux, uy = _unit(bx - ax, by - ay)
        vx, vy = _unit(cx - bx, cy - by)
        d.append(f"L {bx - ux * r1:.1f} {by - uy * r1:.1f}")
        d.append(f"Q {bx:.1f} {by:.1f}, {bx + vx * r2:.1f} {by + vy * r2:.1f}")
    d.append(f"L {points[-1][0]:.1f} {points[-1][1]:.1f}")
    return " ".join(d)


def _unit(dx: float, dy: float) -> tuple[float, float]:
    length = (dx * dx + dy * dy) ** 0.5 or 1.0
    return dx / length, dy / length


def layout(order: Sequence[str], widths: dict[str, float], edges: Sequence[LayoutEdge],
           roots: Sequence[str]) -> Layout:
    """Lay out nodes `order` (each `widths[n]` wide) joined by `edges`; DFS starts at `roots`."""
    edges = [e for e in edges if e.source in widths and e.target in widths]
    selfs = {i for i, e in enumerate(edges) if e.source == e.target}
    back = _back_edges(order, edges, roots) - selfs
    forward = [e for i, e in enumerate(edges) if i not in back and i not in selfs]
    layer_of = _longest_path_layers(order, forward)
    nodes = {n: Node(n, widths[n], layer=layer_of[n]) for n in order}
    depth = max(layer_of.values(), default=0) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    for n in order:
        layers[layer_of[n]].append(n)

    # forward edges as chains through one dummy per crossed layer
    chains: list[tuple[LayoutEdge, list[str]]] = []
    down: dict[str, list[str]] = {}
    up: dict[str, list[str]] = {}
    budget, straight = MAX_DUMMIES, set()
    for k in sorted(range(len(forward)), key=lambda k: layer_of[forward[k].target] - layer_of[forward[k].source]):
        need = layer_of[forward[k].target] - layer_of[forward[k].source] - 1
        if need > budget:
            straight.add(k)
        else:
            budget -= need
    for k, e in enumerate(forward):
        chain = [e.source]
        for layer in range(layer_of[e.source] + 1, layer_of[e.target]) if k not in straight else ():
            dummy = f"\0{k}:{layer}"
            nodes[dummy] = Node(dummy, DUMMY_W, dummy=True, layer=layer)
            layers[layer].append(dummy)
            chain.append(dummy)
        chain.append(e.target)
        for a, b in itertools.pairwise(chain):
            down.setdefault(a, []).append(b)
            up.setdefault(b, []).append(a)
        chains.append((e, chain))

    layers = _order_layers(layers, down, up)
    _place_x(layers, nodes, down, up)
    for i, row in enumerate(layers):
        for n in row:
            nodes[n].y = MARGIN + i * (BOX_H + GAP_Y)

    # back edges: side (nearer), lane (interval colouring), gap slots for their horizontal runs
    left = min((n.x - n.width / 2 for n in nodes.values()), default=0.0)
    right = max((n.x + n.width / 2 for n in nodes.values()), default=0.0)
    middle = (left + right) / 2
    backs = sorted((edges[i] for i in back), key=lambda e: abs(layer_of[e.source] - layer_of[e.target]))
    lanes: dict[str, list[list[tuple[int, int]]]] = {"left": [], "right": []}
    back_lane: list[tuple[LayoutEdge, str, int]] = []
    for e in backs:
        side = "left" if nodes[e.source].x + nodes[e.target].x < 2 * middle else "right"
        span = (layer_of[e.target], layer_of[e.source])
        for k, used in enumerate(lanes[side]):
            if all(span[1] < a or span[0] > b for a, b in used):
                used.append(span)
                back_lane.append((e, side, k))
                break
        else:
            lanes[side].append([span])
            back_lane.append((e, side, len(lanes[side]) - 1))

    # ports: outgoing along the bottom, incoming along the top, ordered by where they go
    out_ports: dict[str, list[tuple[float, int]]] = {}
    in_ports: dict[str, list[tuple[float, int]]] = {}
    for k, (e, chain) in enumerate(chains):
        out_ports.setdefault(e.source, []).append((nodes[chain[1]].x, k))
        in_ports.setdefault(e.target, []).append((nodes[chain[-2]].x, k))
    for k, (e, side, _) in enumerate(back_lane):
        far = -1e9 if side == "left" else 1e9
        out_ports.setdefault(e.source, []).append((far, len(chains) + k))
        in_ports.setdefault(e.target, []).append((far, len(chains) + k))
    port_out: dict[int, float] = {}
    port_in: dict[int, float] = {}
    for ports, into in ((out_ports, port_out), (in_ports, port_in)):
        for n, items in ports.items():
            items.sort()
            for (_, k), off in zip(items, _spread(len(items), nodes[n].width), strict=True):
                into[k] = nodes[n].x + off

    routes: list[Route] = []
    for k, (e, chain) in enumerate(chains):
        src, dst = nodes[e.source], nodes[e.target]
        points = [(port_out[k], src.y + BOX_H)]
        for dummy in chain[1:-1]:
            points += [(nodes[dummy].x, nodes[dummy].y), (nodes[dummy].x, nodes[dummy].y + BOX_H)]
        points.append((port_in[k], dst.y))
        d = [f"M {points[0][0]:.1f} {points[0][1]:.1f}"]
        labels: list[tuple[float, float]] = []
        for j in range(0, len(points) - 1, 2):
            seg, on = _bezier(points[j], points[j + 1])
            d.append(seg)
            labels += on
            if j + 2 < len(points):
                d.append(f"L {points[j + 2][0]:.1f} {points[j + 2][1]:.1f}")
        routes.append(Route(e, " ".join(d), labels))

    gap_slots: dict[int, int] = {}  # gap under layer i -> horizontal runs placed in it

    def slot_y(gap: int) -> float:
        k = gap_slots.get(gap, 0)
        gap_slots[gap] = k + 1
        top = MARGIN + gap * (BOX_H + GAP_Y) + BOX_H
        return top + 10 + (k * 9) % (GAP_Y - 20)

    for k, (e, side, lane) in enumerate(back_lane):
        src, dst = nodes[e.source], nodes[e.target]
        sign = -1 if side == "left" else 1
        edge_x = (left if side == "left" else right) + sign * (20 + lane * LANE_GAP)
        x0, x1 = port_out[len(chains) + k], port_in[len(chains) + k]
        y_out = slot_y(src.layer)
        y_in = slot_y(dst.layer - 1) if dst.layer > 0 else dst.y - 12
        pts = [(x0, src.y + BOX_H), (x0, y_out), (edge_x, y_out), (edge_x, y_in), (x1, y_in), (x1, dst.y)]
        run = abs(edge_x - x0)
        labels = [(x0 + sign * min(run * f, run - 30), y_out) for f in (0.5, 0.3, 0.7, 0.15, 0.85)]
        labels.append((x0, (src.y + BOX_H + y_out) / 2))
        routes.append(Route(e, _orthogonal(pts), labels, back=True))

    for i in sorted(selfs):
        e = edges[i]
        looped = nodes[e.source]
        x, y = looped.x + looped.width / 2, looped.y + BOX_H / 2
        loop = f"M {x:.1f} {y - 10:.1f} C {x + 40:.1f} {y - 30:.1f}, {x + 40:.1f} {y + 30:.1f}, {x:.1f} {y + 10:.1f}"
        routes.append(Route(e, loop, [(x + 34, y)], back=True))

    lanes_left = len(lanes["left"]) * LANE_GAP + (20 if lanes["left"] else 0)
    lanes_right = len(lanes["right"]) * LANE_GAP + (20 if lanes["right"] else 0)
    shift = MARGIN - left + lanes_left
    for node in nodes.values():
        node.x += shift
    for r in routes:
        r.d = _shift_path(r.d, shift)
        r.labels = [(x + shift, y) for x, y in r.labels]
    width = right - left + lanes_left + lanes_right + 2 * MARGIN
    height = MARGIN * 2 + depth * BOX_H + (depth - 1) * GAP_Y
    real_layers = [[n for n in layer if not nodes[n].dummy] for layer in layers]
    return Layout({n: v for n, v in nodes.items()}, routes, width, height, real_layers)


def _shift_path(d: str, dx: float) -> str:
    """Move every x of a path made of absolute M/L/C/Q commands (x y pairs) by dx."""
    out: list[str] = []
    expect_x = True
    for token in d.replace(",", " , ").split():
        if token.isalpha():
            out.append(token)
            expect_x = True
        elif token == ",":
            out[-1] += ","
        else:
            value = float(token)
            out.append(f"{value + dx:.1f}" if expect_x else f"{value:.1f}")
            expect_x = not expect_x
    return " ".join(out)
