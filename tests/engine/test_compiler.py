"""The compiler: one transitions.Machine per revision, every edge a transition, caching."""

from __future__ import annotations

import time

import pytest
import transitions
from flowkit import FLOWS_DIR, load_test_flow

from orchestrator.engine import compiler
from orchestrator.engine.compiler import FlowCache, compile_flow
from orchestrator.errors import FlowError, FlowRuntimeError
from orchestrator.plugins.connectors import ConnectorRegistry

SMALL = """
flow: small
start: hello
intents:
  agent: {match: [agent], goto: bye}
states:
  hello:
    say: "Hi {{ who }}"
    next: pick
  pick:
    ask: Pick one
    choices: {a: {label: A}, b: {label: B}}
    on: {a: lookup, b: route, fail: bye}
  lookup:
    call: calendar.find_slots
    args: {around: "{{ who }}", count: 2}
    next: bye
    on: {empty: route, error: bye}
  route:
    branch:
      - {when: "who == 'x'", goto: hello}
      - {goto: bye}
  bye:
    say: Bye
    end: done
vars: {who: you}
"""


def small():  # type: ignore[no-untyped-def]
    return compile_flow(load_test_flow(SMALL, "small.yaml"))


def test_every_edge_is_a_transition_named_by_its_route() -> None:
    flow = small()
    m = flow.machine
    assert set(m.states) == {"hello", "pick", "lookup", "route", "bye"}
    edges = {(t.source, name, t.dest) for name, ev in m.events.items()
             for ts in ev.transitions.values() for t in ts}
    assert edges == {
        ("hello", "next", "pick"),
        ("pick", "a", "lookup"), ("pick", "b", "route"), ("pick", "fail", "bye"),
        ("pick", "intent:agent", "bye"),
        ("lookup", "next", "bye"), ("lookup", "ok", "bye"), ("lookup", "empty", "route"),
        ("lookup", "error", "bye"),
        ("route", "branch_0", "hello"), ("route", "branch_1", "bye"),
    }
    assert not any(name.startswith("to_") for name in m.events)  # auto_transitions=False
    assert m.models == []  # no model attached, ever


def test_fire_moves_through_the_machine_and_refuses_missing_edges() -> None:
    flow = small()
    assert flow.fire("pick", "a") == "lookup"
    assert flow.fire("pick", "intent:agent") == "bye"
    with pytest.raises(FlowRuntimeError, match=r"'b'.*'hello'"):
        flow.fire("hello", "b")  # exists in the flow, not from this state
    with pytest.raises(FlowRuntimeError, match="no transition 'nope'"):
        flow.fire("hello", "nope")


def test_templates_and_settings_are_precompiled() -> None:
    flow = small()
    hello = flow.states["hello"]
    assert hello.text.get("sms") is hello.text.default
    assert hello.text.get("sms").render({"who": "Ann"}) == "Hi Ann"
    assert flow.states["lookup"].args.render({"who": "Ann"}) == {"around": "Ann", "count": 2}
    assert flow.states["lookup"].timeout_seconds == 8.0
    assert [c.id for c in flow.states["pick"].choices] == ["a", "b"]
    assert flow.states["pick"].max_retries == 2


def test_channel_overrides_and_summary_vars_of_the_dental_flow() -> None:
    flow = compile_flow(load_test_flow(FLOWS_DIR / "dental_booking.yaml"))
    greet = flow.states["greet"].text
    ctx = {"clinic": "C"}
    assert greet.get("voice").render(ctx) == "Thanks for calling C."
    assert greet.get("sms").render(ctx) == greet.get("chat").render(ctx) == "Hi! Thanks for contacting C."
    assert flow.summary_vars.name == "patient_name"
    assert flow.summary_vars.wanted == "wanted"
    assert flow.summary_vars.booking == "booking"
    assert flow.no_reply_seconds == 600.0
    assert flow.fire("book", "conflict") == "slot_taken"


def test_unknown_connector_action_is_a_flow_error() -> None:
    with pytest.raises(FlowError, match=r"unknown action 'calendar.find_slots'"):
        compile_flow(load_test_flow(SMALL, "small.yaml"), connectors=ConnectorRegistry())


def test_flow_cache_reuses_and_evicts_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real = compiler.compile_flow

    def counting(source, revision=None, *, connectors=None):  # type: ignore[no-untyped-def]
        built.append(revision)
        return real(source, revision, connectors=connectors)

    monkeypatch.setattr(compiler, "compile_flow", counting)
    cache = FlowCache(max_size=2)
    flows = [load_test_flow(SMALL.replace("Bye", f"Bye {i}"), f"f{i}.yaml") for i in range(3)]
    first = cache.get_or_compile(flows[0])
    assert cache.get_or_compile(flows[0]) is first
    cache.get_or_compile(flows[1])
    cache.get(flows[0].revision)  # touch: flows[1] is now the least recently used
    cache.get_or_compile(flows[2])
    assert len(cache) == 2
    assert flows[0].revision in cache and flows[1].revision not in cache
    assert len(built) == 3
    with pytest.raises(ValueError, match="max_size"):
        FlowCache(max_size=0)


def test_large_flow_compiles_fast() -> None:
    n = 300
    lines = ["flow: big", "start: s0", "states:"]
    for i in range(n - 1):
        lines += [f"  s{i}:", f"    ask: Question {i}?", "    choices: {y: {label: Left}, n: {label: Right}}",
                  f"    on: {{y: s{i + 1}, n: s{(i * 7) % n}, fail: s{n - 1}}}"]
    lines += [f"  s{n - 1}:", "    end: done"]
    loaded = load_test_flow("\n".join(lines) + "\n", "big.yaml")
    started = time.perf_counter()
    flow = compile_flow(loaded)
    assert time.perf_counter() - started < 1.0
    assert len(flow.machine.states) == n
    assert flow.fire("s5", "y") == "s6"


def test_machine_is_built_once_per_revision_and_never_gets_models(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"machines": 0, "add_model": 0}

    class CountingMachine(transitions.Machine):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            counts["machines"] += 1
            super().__init__(*args, **kwargs)

        def add_model(self, model, initial=None):  # type: ignore[no-untyped-def]
            counts["add_model"] += 1
            return super().add_model(model, initial)

    monkeypatch.setattr(compiler, "Machine", CountingMachine)
    cache = FlowCache()
    loaded = load_test_flow(SMALL, "small.yaml")
    for _ in range(100):
        flow = cache.get_or_compile(loaded)
        state = "pick"
        for trigger in ("a", "ok"):
            state = flow.fire(state, trigger)
        assert state == "bye"
    assert counts == {"machines": 1, "add_model": 0}


@pytest.mark.parametrize(
    ("source", "ctx"),
    [
        ("Hi {{ name }}!", {"name": "Ann"}),
        ("{{ n }} and {{ none }}", {"n": 3, "none": None}),
        ("At {{ booking }} / {{ booking.label }}", {"booking": {"label": "Thu 10 AM", "id": "b1"}}),
        ("{{ a.b.c }}", {"a": {"b": {"c": True}}}),
        ("{{ a.items }}", {"a": {"items": "x"}}),  # shadows a dict method: jinja decides
        ("{{ s.upper }}", {"s": "text"}),  # not a mapping: jinja decides
        ("Price {{x}}{{ y }}", {"x": 1.5, "y": [1, 2]}),
    ],
)
def test_substitution_prompts_render_exactly_like_jinja(source: str, ctx: dict[str, object]) -> None:
    from orchestrator.flow.templates import TemplateEngine

    engine = TemplateEngine("UTC", "en-US")
    fast = compiler.compile_text(engine, source)
    assert isinstance(fast, compiler.SubstitutionTemplate)
    assert fast.render(ctx) == engine.compile(source).render(ctx)


def test_substitution_prompt_missing_variable_renders_as_jinja_does() -> None:
    from orchestrator.flow.templates import TemplateEngine

    engine = TemplateEngine("UTC", "en-US")
    fast = compiler.compile_text(engine, "Hi {{ nme }}!")
    assert fast.render({"name": "Ann"}) == "Hi !"  # unset: empty, with a warning (templates.py)
    assert not isinstance(compiler.compile_text(engine, "{{ name | upper }}"), compiler.SubstitutionTemplate)
    assert not isinstance(compiler.compile_text(engine, "{% if x %}y{% endif %}"), compiler.SubstitutionTemplate)
