"""Engine-only benchmark: turns per second on dental_booking, and compiling a 1,000-state flow;
the same booking in English and in Spanish on the bilingual salon (SPEC §9: a Spanish turn
within 20% of an English one).

    .venv/bin/python benchmarks/bench_engine.py [--conversations 300]

Prints a table and writes benchmarks/results/engine-<git sha>.json. Targets: median turn
< 200 µs; a 1,000-state flow compiles in < 1 s. The calendar is a trivial in-memory
connector so the figures are the engine's own (templates, input parsing, the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec

from orchestrator.engine.compiler import compile_flow
from orchestrator.engine.turn import Engine
from orchestrator.flow.loader import load_flow, load_flow_text
from orchestrator.model import Event
from orchestrator.plugins.connectors import Action, CallContext, ConnectorRegistry, ConnectorResult

ROOT = Path(__file__).resolve().parent.parent
WALK = [("start", None), ("text", "1"), ("text", "Alex Morgan"), ("text", "cleaning"),
        ("text", "tomorrow at 10am"), ("text", "1")]
NOW = 1795626000.0  # Wed 25 Nov 2026 12:00 New York
SALON_EN = [("start", None), ("text", "haircut"), ("text", "Ann Lee"), ("text", "tomorrow at 11am"), ("text", "1")]
SALON_ES = [("start", None), ("text", "corte"), ("text", "María García"), ("text", "mañana a las 11"), ("text", "1")]


class _FindArgs(msgspec.Struct, kw_only=True):
    around: str | None = None
    duration: str | None = None
    count: int = 3


class _BookArgs(msgspec.Struct, kw_only=True):
    slot: Any
    title: str = ""
    name: str | None = None
    reason: str | None = None


class MemoryCalendar:
    name = "calendar"

    def __init__(self) -> None:
        self.actions = {"find_slots": Action(_FindArgs, self.find_slots), "book": Action(_BookArgs, self.book)}
        self.booked = 0

    async def find_slots(self, args: _FindArgs, ctx: CallContext) -> ConnectorResult:
        return ConnectorResult(outcome="ok", value=[
            {"start": f"2026-11-26T{h}:00:00-05:00", "end": f"2026-11-26T{h}:30:00-05:00",
             "label": f"Thu 26 Nov, {h}:00 AM"} for h in (10, 11, 14)])

    async def book(self, args: _BookArgs, ctx: CallContext) -> ConnectorResult:
        self.booked += 1
        return ConnectorResult(outcome="ok", value={**args.slot, "id": f"b{self.booked}", "calendar": "memory"})


async def engine_turns(conversations: int, flow: str = "dental_booking", walk: list[Any] = WALK,
                       country: str = "1555") -> dict[str, Any]:
    registry = ConnectorRegistry()
    registry.register(MemoryCalendar())
    engine = Engine(compile_flow(load_flow(ROOT / "flows" / f"{flow}.yaml")), registry)
    samples: list[float] = []
    per_step: list[list[float]] = [[] for _ in walk]
    for warm in (True, False):
        for i in range(5 if warm else conversations):
            session = engine.new_session(f"b:+{country}{i:07d}", business="b", contact=f"+{country}{i:07d}",
                                         channel="sms", now=NOW)
            for step, (kind, text) in enumerate(walk):
                event = Event(kind=kind, channel="sms", text=text)  # type: ignore[arg-type]
                started = time.perf_counter()
                result = await engine.turn(session, event, NOW + step)
                took = (time.perf_counter() - started) * 1e6
                session = result.session
                if not warm:
                    samples.append(took)
                    per_step[step].append(took)
            if session.outcome != "booked":
                raise SystemExit(f"benchmark walk did not book (outcome {session.outcome!r})")
    samples.sort()
    return {
        "turns": len(samples),
        "turns_per_s": round(len(samples) / (sum(samples) / 1e6)),
        "median_us": round(statistics.median(samples), 1),
        "p99_us": round(samples[int(len(samples) * 0.99) - 1], 1),
        "median_us_per_step": {f"{i + 1}.{t or k}": round(statistics.median(v), 1)
                               for i, ((k, t), v) in enumerate(zip(walk, per_step, strict=True))},
    }


def big_flow(n: int) -> str:
    lines = ["flow: big", "start: s0", "intents:", "  agent: {match: [agent], goto: bye}", "states:"]
    for i in range(n - 1):
        lines += [f"  s{i}:", f"    ask: \"Question {i}, {{{{ who }}}}?\"",
                  "    choices: {a: {label: Left, dtmf: '1'}, b: {label: Right, dtmf: '2'}}",
                  f"    on: {{a: s{i + 1}, b: s{max(i - 1, 0)}, fail: bye}}"]
    lines += ["  bye:", "    end: done", "vars: {who: you}"]
    return "\n".join(lines) + "\n"


def compile_big(n: int) -> dict[str, Any]:
    text = big_flow(n)
    started = time.perf_counter()
    loaded = load_flow_text(text, "big.yaml")
    load_s = time.perf_counter() - started
    tracemalloc.start()
    started = time.perf_counter()
    compiled = compile_flow(loaded)
    compile_s = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(compiled.machine.states) == n
    return {"states": n, "load_s": round(load_s, 3), "compile_s": round(compile_s, 3),
            "peak_mb": round(peak / 1e6, 1)}


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--states", type=int, default=1000)
    args = parser.parse_args()
    turns = asyncio.run(engine_turns(args.conversations))
    english = asyncio.run(engine_turns(args.conversations, "salon_bilingual", SALON_EN, "1555"))
    spanish = asyncio.run(engine_turns(args.conversations, "salon_bilingual", SALON_ES, "3460"))
    ratio = spanish["median_us"] / english["median_us"]
    big = compile_big(args.states)
    sha = git_sha()
    rows = [
        ("engine turns/s (dental_booking, sms)", f"{turns['turns_per_s']:,}", ""),
        ("median µs per turn", f"{turns['median_us']}", "target < 200"),
        ("p99 µs per turn", f"{turns['p99_us']}", ""),
        (f"compile {big['states']}-state flow (s)", f"{big['compile_s']}", "target < 1"),
        (f"load (YAML) {big['states']}-state flow (s)", f"{big['load_s']}", ""),
        ("compile peak memory (MB, tracemalloc)", f"{big['peak_mb']}", ""),
        ("salon_bilingual median µs, English turn", f"{english['median_us']}", ""),
        ("salon_bilingual median µs, Spanish turn", f"{spanish['median_us']}", f"x{ratio:.2f} (target < 1.2)"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"engine benchmark @ {sha} ({turns['turns']} turns, Python {platform.python_version()})")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")
    print("  median µs by step: " + ", ".join(f"{k} {v}" for k, v in turns["median_us_per_step"].items()))
    out = ROOT / "benchmarks" / "results" / f"engine-{sha}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"git_sha": sha, "at": time.time(), "python": platform.python_version(),
                               "engine": turns, "compile": big,
                               "languages": {"en": english, "es": spanish, "es_over_en": round(ratio, 3)}},
                              indent=2) + "\n")
    print(f"  written: {out.relative_to(ROOT)}")
    print("  salon by step, en: " + ", ".join(f"{k} {v}" for k, v in english["median_us_per_step"].items()))
    print("  salon by step, es: " + ", ".join(f"{k} {v}" for k, v in spanish["median_us_per_step"].items()))
    ok = turns["median_us"] < 200 and big["compile_s"] < 1 and ratio < 1.2
    print("  targets: " + ("met" if ok else "MISSED"))


if __name__ == "__main__":
    main()
