"""Definite assignment over a flow's graph: which variables are surely set when a state runs.

A template or condition that reads a variable is safe only if every path from the start to
its state sets it first. A state's `save:` is set only on the edges taken after it succeeded:
an ask's answer routes (`next`, a choice, `yes` / `no`), a call's `ok` / `empty`, a record's
`next`; never on `fail`, `timeout`, `error`, `conflict`, `no_answer`, `undelivered` or a
global intent, which leave the state without its value.

    flow_in = assigned_on_entry(flow, initial)        # state -> variables set on every path
    path = unset_path(flow, "thanks", "name")          # ["greet", "menu", "(intent agent)", "thanks"]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from orchestrator.flow import schema
from orchestrator.flow.graph import Edge, all_edges

# Edges that leave a state without the value its `save:` would have stored.
_NOT_SAVED = frozenset({"fail", "timeout", "error", "conflict", "no_answer", "undelivered"})
# Edge labels worth showing in a path (an answer's route is the usual way and is left out).
_SHOWN = _NOT_SAVED | {"empty"}


def saves_on(state: schema.State, edge: Edge) -> str | None:
    """The variable `state` has set when the conversation leaves it by `edge`, if any."""
    save = getattr(state, "save", None)
    if not save or edge.label in _NOT_SAVED or edge.label.startswith("intent:"):
        return None
    if isinstance(state, schema.BranchState | schema.HandoffState):
        return None
    return str(save)


def _edges(flow: schema.Flow) -> dict[str, list[Edge]]:
    out: dict[str, list[Edge]] = {}
    for e in all_edges(flow):
        if e.source in flow.states and e.target in flow.states:
            out.setdefault(e.source, []).append(e)
    return out


def assigned_on_entry(flow: schema.Flow, initial: Iterable[str]) -> dict[str, frozenset[str]]:
    """For every state reachable from the start: the variables set on every path into it.

    A must-analysis (intersection over incoming edges), iterated to its fixpoint; `initial`
    holds what is set before the first state (the flow's vars and the built-ins)."""
    if flow.start not in flow.states:
        return {}
    edges = _edges(flow)
    start_set = frozenset(initial)
    entry: dict[str, frozenset[str]] = {flow.start: start_set}
    queue = deque([flow.start])
    while queue:
        name = queue.popleft()
        state = flow.states[name]
        for e in edges.get(name, []):
            saved = saves_on(state, e)
            out = entry[name] | {saved} if saved else entry[name]
            before = entry.get(e.target)
            after = out if before is None else before & out
            if e.target == flow.start:
                after &= start_set
            if after != before:
                entry[e.target] = after
                queue.append(e.target)
    return entry


def unset_path(flow: schema.Flow, target: str, var: str) -> list[str]:
    """One path from the start to `target` on which nothing sets `var` (shortest, states and
    the telling edge labels), or [] when there is none."""
    edges = _edges(flow)
    previous: dict[str, tuple[str, Edge] | None] = {flow.start: None}
    queue = deque([flow.start])
    while queue:
        name = queue.popleft()
        if name == target:
            break
        for e in edges.get(name, []):
            if saves_on(flow.states[name], e) == var or e.target in previous:
                continue
            previous[e.target] = (name, e)
            queue.append(e.target)
    if target not in previous:
        return []
    path: list[str] = [target]
    step = previous[target]
    while step is not None:
        source, edge = step
        label = edge.label
        if label.startswith("intent:"):
            path.append(f"(intent {label.removeprefix('intent:')})")
        elif label in _SHOWN:
            path.append(f"({label})")
        path.append(source)
        step = previous[source]
    return path[::-1]
