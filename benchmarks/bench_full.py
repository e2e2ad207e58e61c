"""The whole webhook path under load: signed webhooks -> uvicorn + litestar -> runtime -> Redis.

    .venv/bin/python benchmarks/bench_full.py            # warm-up, then 3 x 10 s per figure
    .venv/bin/python benchmarks/bench_full.py --quick    # 3 x 3 s, for development
    .venv/bin/python benchmarks/bench_full.py --cluster  # also 1 process on a 3-shard Redis Cluster

Starts its own redis-server (`--save "" --appendonly no`, a free port), fake Twilio and
Graph servers, the product (1, then 2 processes) and the baseline app (baselines.py) with
the same uvicorn settings; load comes from loadgen.py in another process. Everything it
started is stopped by pid. Prints a table and writes benchmarks/results/full-<sha>.json.
"""

from __future__ import annotations

import argparse
import http.server
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

import redis  # noqa: E402
from clusterkit import RedisClusterKit  # noqa: E402
from fakes.graph import FakeGraph  # noqa: E402
from fakes.twilio import FakeTwilio  # noqa: E402
from faultkit import PYTHON, RedisServer, ServerProcess, cpu_seconds, rss_bytes, server_env  # noqa: E402

from orchestrator.stores import redis as store_redis  # noqa: E402
from orchestrator.stores.layout import BUCKETS, Layout  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SCRIPT_COMMANDS = {c.lower() for c in re.findall(r"redis\.call\('(\w+)'", "".join(
    v for k, v in vars(store_redis).items() if k.endswith("_LUA") and isinstance(v, str)))}


def git_sha() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "orchestrator", "channels"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def load(url: str, scenario: str, seconds: float, *, connections: int = 64, rate: float | None = None,
         conversations: int | None = None) -> dict[str, Any]:
    cmd = [PYTHON, str(ROOT / "benchmarks" / "loadgen.py"), "--url", url, "--scenario", scenario,
           "--seconds", str(seconds), "--connections", str(connections)]
    if rate:
        cmd += ["--rate", str(rate)]
    if conversations:
        cmd += ["--conversations", str(conversations)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=seconds + 600)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def round_trips(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(client round trips, ambiguous) between two INFO commandstats: scripts and pipelines
    count once; commands our Lua scripts also run (e.g. GET) are counted as ambiguous."""
    exact = ambiguous = 0
    for key, stat in after.items():
        name = key.removeprefix("cmdstat_").split("|")[0]
        delta = int(stat["calls"]) - int(before.get(key, {}).get("calls", 0))
        if name in ("info", "ping", "hello", "client", "script"):
            continue
        if name in ("evalsha", "eval", "exec", "evalsha_ro") or name not in SCRIPT_COMMANDS:
            exact += delta if name not in ("multi",) else 0
        else:
            ambiguous += delta
    return exact, ambiguous


def measure(server: ServerProcess, rds: Any, scenario: str, runs: int, seconds: float,
            outbox: str | None = None, **kw: Any) -> dict[str, Any]:
    """Medians of `runs` loads. With `outbox` (a key prefix), each run also waits until the outbox
    sender has sent what the run queued (WhatsApp replies go out after the webhook's 200): that
    sending counts in the CPU per turn and never spills into the next figure."""
    load(server.url, scenario, min(2.0, seconds))  # warm-up
    if outbox:
        drain_outbox(rds, outbox, timeout=120)
    results = []
    for _ in range(runs):
        pids = server.worker_pids()
        cpu0 = sum(cpu_seconds(p) for p in pids)
        stats0 = rds.info("commandstats")
        r = load(server.url, scenario, seconds, **kw)
        if outbox:
            t = time.monotonic()
            r["outbox_left"] = drain_outbox(rds, outbox, timeout=120)
            r["outbox_drain_s"] = round(time.monotonic() - t, 2)
            # webhooks answered AND their replies sent, per second of the whole run: the sender works
            # inside the load window too, so webhook req/s alone rewards a sender that falls behind
            window = r["requests"] / max(r["rps"], 1e-9)
            r["delivered_rps"] = round(r["requests"] / (window + r["outbox_drain_s"]), 1)
        stats1 = rds.info("commandstats")
        cpu1 = sum(cpu_seconds(p) for p in pids)
        trips, amb = round_trips(stats0, stats1)
        r["cpu_us_per_req"] = round((cpu1 - cpu0) / max(1, r["requests"]) * 1e6, 1)
        r["redis_trips_per_req"] = round(trips / max(1, r["requests"]), 2)
        r["redis_ambiguous_per_req"] = round(amb / max(1, r["requests"]), 2)
        results.append(r)
    med = sorted(results, key=lambda x: x["rps"])[len(results) // 2]
    return {**med, "rps_runs": [x["rps"] for x in results],
            "non_2xx": sum(v for x in results for k, v in x["statuses"].items() if not k.startswith("2"))}


class ClusterView:
    """What `measure` reads from Redis (`info("commandstats")`, `zcard` of the outbox), summed over
    a cluster's masters and buckets."""

    def __init__(self, cluster: RedisClusterKit) -> None:
        self.nodes = [redis.Redis(port=p) for p in cluster.ports]
        self.client = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])

    def info(self, section: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for node in self.nodes:
            for key, stat in node.info(section).items():
                calls = merged.setdefault(key, {"calls": 0})
                calls["calls"] = int(calls["calls"]) + int(stat["calls"])
        return merged

    def zcard(self, key: str) -> int:
        prefix, _, name = key.rpartition(":")
        return sum(int(self.client.zcard(k)) for k in Layout(prefix, BUCKETS).every(name))


def compile_figures() -> dict[str, Any]:
    code = r"""
import json, resource, sys, time
from pathlib import Path
from orchestrator.flow.loader import load_flow, load_flow_text
from orchestrator.engine.compiler import compile_flow
from orchestrator.plugins.connectors import ConnectorRegistry
reg = ConnectorRegistry(); reg.load_entry_points()
t = time.perf_counter()
for p in sorted(Path("flows").glob("*.yaml")):
    f = load_flow(p); compile_flow(f, f.revision, connectors=reg)
shipped = time.perf_counter() - t
n = 1000
lines = ["flow: big", "title: Big", "start: s0", "states:"]
for i in range(n):
    lines += [f"  s{i}:", f"    ask: \"Question {i}, {{{{ contact.phone }}}}?\"",
              "    choices:", "      a: {label: A, dtmf: \"1\"}", "      b: {label: B, dtmf: \"2\"}",
              f"    on: {{a: s{i + 1 if i + 1 < n else 'end'}, b: s{(i * 7 + 3) % n}}}"]
lines += ["  end:", "    say: Done.", "    end: done"]
text = "\n".join(lines) + "\n"
t = time.perf_counter()
f = load_flow_text(text, "big.yaml"); compile_flow(f, f.revision, connectors=reg)
big = time.perf_counter() - t
# memory on a second build (timed above without the tracer's overhead): the peak of Python
# allocations while loading + compiling, and what the compiled flow keeps once built
import gc, tracemalloc
gc.collect()
tracemalloc.start()
f = load_flow_text(text, "big2.yaml"); kept = compile_flow(f, f.revision, connectors=reg)
gc.collect()
retained, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
print(json.dumps({"shipped_flows_s": round(shipped, 3), "states_1000_s": round(big, 3),
                  "states_1000_peak_mb": round(peak / 2**20, 1), "states_1000_kept_mb": round(retained / 2**20, 1),
                  "process_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"error": done.stderr[-1500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


PARTS = {"s": "session", "t": "transcript", "d": "dedupe", "r": "record", "o": "outbox"}

# The fakes answer on a keep-alive connection with two writes (headers, then body): with Nagle on,
# the body waits for the client's delayed ACK, 40 ms per send; the outbox sender then drains
# ~25 items/s and the unsent items (o:<uniq>) showed up as a conversation's "other" bytes.
http.server.BaseHTTPRequestHandler.disable_nagle_algorithm = True


def drain_outbox(rds: Any, prefix: str, timeout: float = 60.0) -> int:
    """Wait (bounded) until the outbox sender has sent everything queued; returns what is left."""
    deadline = time.monotonic() + timeout
    while (left := int(rds.zcard(f"{prefix}:outbox"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def conversation_bytes(rds: redis.Redis, prefix: str, sample: int = 50) -> dict[str, float]:
    """MEMORY USAGE of every key of live (mid-flow) conversations, averaged over a sample, and
    per part: session, transcript list, dedupe replies, conversation records, unsent outbox
    items (transient: measured after the sender drained the queue), other."""
    pending = drain_outbox(rds, prefix)
    totals, sessions, sampled = [], [], []
    parts: dict[str, list[int]] = {name: [] for name in (*PARTS.values(), "other")}
    for key in rds.scan_iter(match=f"{prefix}:{{*}}:s", count=1000):
        name = key.decode()
        sid_tag = name[len(prefix) + 1:-2]
        value = rds.get(key)
        if not value:
            continue
        keys = list(rds.scan_iter(match=f"{prefix}:{sid_tag}:*".replace("[", "\\["), count=1000))
        by_part = dict.fromkeys(parts, 0)
        for k in keys:
            part = k.decode()[len(prefix) + 1 + len(sid_tag) + 1:].split(":", 1)[0]
            by_part[PARTS.get(part, "other")] += int(rds.memory_usage(k) or 0)
        for part, size in by_part.items():
            parts[part].append(size)
        totals.append(sum(by_part.values()))
        sessions.append(len(store_redis.parse_session_value(value)[2]))
        sampled.append(sid_tag.strip("{}"))
        if len(totals) >= sample:
            break
    # the conversation's share of the global indexes: its members in the sessions / timers /
    # records zsets (their MEMORY USAGE over their members) and its contact's set c:<contact>
    members = max(1, int(rds.zcard(f"{prefix}:sessions")))
    shared = sum(int(rds.memory_usage(k) or 0) for k in
                 (f"{prefix}:sessions", f"{prefix}:timers", *(k.decode() for k in rds.scan_iter(
                     match=f"{prefix}:records*", count=1000))))
    contacts = [int(rds.memory_usage(f"{prefix}:c:{sid.rpartition(':')[2]}") or 0) for sid in sampled]
    out = {"all_keys_bytes": round(statistics.mean(totals), 0) if totals else 0,
           "index_bytes": round(shared / members + (statistics.mean(contacts) if contacts else 0), 0),
           "session_msgpack_bytes": round(statistics.mean(sessions), 0) if sessions else 0,
           "outbox_pending_items": pending}
    out.update({f"{part}_bytes": round(statistics.mean(v), 0) if v else 0 for part, v in parts.items()})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 x 3 s instead of 3 x 10 s, fewer conversations")
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--cluster", action="store_true",
                    help="also 1 process on a private 3-shard Redis Cluster (redis+cluster://), same run")
    a = ap.parse_args()
    seconds, runs = (3.0, 3) if a.quick else (10.0, 3)
    sha = git_sha()
    report: dict[str, Any] = {"sha": sha, "quick": a.quick, "seconds": seconds, "runs": runs, "by_procs": {}}
    work = Path(tempfile.mkdtemp(prefix="bench-full-"))
    with RedisServer() as rs, FakeGraph() as graph, FakeTwilio() as twilio:
        rds = redis.Redis(port=rs.port)
        for procs in (int(p) for p in a.procs.split(",")):
            prefix = f"bench{procs}"
            env = server_env(rs.url, ROOT / "flows", prefix=prefix, twilio_api_base=twilio.url,
                             whatsapp_api_base=graph.url, calendar_db=work / f"cal{procs}.sqlite3",
                             ORCHESTRATOR_LOCK_TTL_SECONDS="10", ORCHESTRATOR_LOCK_WAIT_SECONDS="5",
                             ORCHESTRATOR_TIMER_POLL_SECONDS="1", BASELINE_REDIS_URL=rs.url)
            row: dict[str, Any] = {}
            with ServerProcess(env, workers=procs, app="benchmarks.baselines:create_app",
                               ready_path="/bare") as base:
                for scenario in ("bare", "skeleton"):
                    row[scenario] = measure(base, rds, scenario, runs, seconds)
                    print(f"[{procs}p] {scenario}: {row[scenario]['rps']} req/s", flush=True)
            with ServerProcess(env, workers=procs) as server:
                for scenario in ("sms", "voice", "whatsapp", "hot"):
                    row[scenario] = measure(server, rds, scenario, runs, seconds,
                                            outbox=prefix if scenario == "whatsapp" else None,
                                            connections=64 if scenario != "hot" else 16)
                    print(f"[{procs}p] {scenario}: {row[scenario]['rps']} req/s, "
                          f"{row[scenario]['cpu_us_per_req']} us/req", flush=True)
                if procs == 2:
                    row["paced_1000"] = measure(server, rds, "sms", runs, seconds, rate=1000, connections=128)
                    n = 200 if a.quick else 1000
                    t = time.perf_counter()
                    booking = load(server.url, "booking", 0, connections=32, conversations=n)
                    booking["wall_s"] = round(time.perf_counter() - t, 2)
                    booking["conversations"] = n
                    row["booking"] = booking
                    print(f"[{procs}p] booking: {booking['bookings']}/{n} booked", flush=True)
                row["bytes_per_conversation"] = conversation_bytes(rds, prefix)
                if procs == 1:
                    pid = server.pid
                    rss = [rss_bytes(pid)]
                    total = 2000 if a.quick else 10_000
                    for _ in range(2):
                        load(server.url, "hello", 0, conversations=total // 2)
                        rss.append(rss_bytes(pid))
                    row["rss_mb"] = [round(x / 2**20, 1) for x in rss]
                    row["rss_conversations"] = total
            report["by_procs"][str(procs)] = row
        if a.cluster:
            report["cluster"] = cluster_row(work, graph, twilio, runs, seconds)
        report["compile"] = compile_figures()
    print_table(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"full-{sha}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {out.relative_to(ROOT)}")
    return 0


def cluster_row(work: Path, graph: FakeGraph, twilio: FakeTwilio, runs: int, seconds: float) -> dict[str, Any]:
    """One server process on a 3-master cluster (no replicas, no persistence, as the single Redis)."""
    row: dict[str, Any] = {}
    with RedisClusterKit(3, persist=False) as cluster:
        view = ClusterView(cluster)
        prefix = "benchc"
        env = server_env(cluster.url, ROOT / "flows", prefix=prefix, twilio_api_base=twilio.url,
                         whatsapp_api_base=graph.url, calendar_db=work / "calc.sqlite3",
                         ORCHESTRATOR_LOCK_TTL_SECONDS="10", ORCHESTRATOR_LOCK_WAIT_SECONDS="5",
                         ORCHESTRATOR_TIMER_POLL_SECONDS="1")
        with ServerProcess(env, workers=1) as server:
            for scenario in ("sms", "voice", "whatsapp", "hot"):
                row[scenario] = measure(server, view, scenario, runs, seconds,
                                        outbox=prefix if scenario == "whatsapp" else None,
                                        connections=64 if scenario != "hot" else 16)
                print(f"[cluster 1p] {scenario}: {row[scenario]['rps']} req/s, "
                      f"{row[scenario]['cpu_us_per_req']} us/req", flush=True)
        row["keys_per_shard"] = [sum(1 for shard, _ in cluster.keys(f"{prefix}:*") if shard == i) for i in range(3)]
    return row


def print_table(report: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []
    for procs, row in report["by_procs"].items():
        sms, skel, bare = row["sms"], row["skeleton"], row["bare"]
        rows += [
            (f"[{procs}p] req/s bare / skeleton / sms / voice / whatsapp / hot", "",
             " / ".join(f"{row[k]['rps']:,.0f}" for k in ("bare", "skeleton", "sms", "voice", "whatsapp", "hot"))),
            (f"[{procs}p] whatsapp turns answered and replied per s (load + outbox drain)", "",
             f"{row['whatsapp'].get('delivered_rps', 0):,.0f} (drain {row['whatsapp'].get('outbox_drain_s', 0)} s)"),
            (f"[{procs}p] product (sms) / skeleton req/s", ">= 1.0", f"{sms['rps'] / skel['rps']:.2f}"),
            (f"[{procs}p] product (sms) / bare req/s", "", f"{sms['rps'] / bare['rps']:.2f}"),
            (f"[{procs}p] server CPU us per turn sms / voice / whatsapp (its replies sent) / hot", "<= 400",
             " / ".join(str(row[k]["cpu_us_per_req"]) for k in ("sms", "voice", "whatsapp", "hot"))),
            (f"[{procs}p] server CPU us per request bare / skeleton", "",
             f"{bare['cpu_us_per_req']} / {skel['cpu_us_per_req']}"),
            (f"[{procs}p] p50 / p99 ms sms (64 conns, closed loop)", "", f"{sms['p50_ms']} / {sms['p99_ms']}"),
            (f"[{procs}p] Redis round trips per turn sms / voice / whatsapp / hot", "<= 2",
             " / ".join(f"{row[k]['redis_trips_per_req']}(+{row[k]['redis_ambiguous_per_req']})"
                        for k in ("sms", "voice", "whatsapp", "hot"))),
            (f"[{procs}p] non-2xx answers (all scenarios)", "0",
             str(sum(row[k]["non_2xx"] for k in ("sms", "voice", "whatsapp", "hot")))),
            (f"[{procs}p] bytes per live conversation (all keys / session msgpack)", "< 2048",
             f"{row['bytes_per_conversation']['all_keys_bytes']:.0f} / "
             f"{row['bytes_per_conversation']['session_msgpack_bytes']:.0f}"),
            (f"[{procs}p]   of which session / transcript / dedupe / record / outbox / other", "",
             " / ".join(f"{row['bytes_per_conversation'].get(f'{p}_bytes', 0):.0f}"
                        for p in ("session", "transcript", "dedupe", "record", "outbox", "other"))),
            (f"[{procs}p]   plus its share of the global indexes (sessions, timers, records, contact set)", "",
             f"{row['bytes_per_conversation'].get('index_bytes', 0):.0f}"),
        ]
        if "paced_1000" in row:
            p = row["paced_1000"]
            rows.append((f"[{procs}p] paced 1,000 turns/s: achieved, p50 / p99 ms", "p99 <= 10",
                         f"{p['rps']:,.0f}/s, {p['p50_ms']} / {p['p99_ms']}"))
        if "booking" in row:
            b = row["booking"]
            rows.append((f"[{procs}p] dental_booking walks: booked / conversations, wall s", "all",
                         f"{b['bookings']} / {b['conversations']}, {b['wall_s']}"))
        if "rss_mb" in row:
            rows.append((f"[{procs}p] server RSS MB: start, half, after {row['rss_conversations']:,} conversations",
                         "flat, < 150", " -> ".join(str(x) for x in row["rss_mb"])))
    if "cluster" in report:
        row, single = report["cluster"], report["by_procs"].get("1")
        kinds = ("sms", "voice", "whatsapp", "hot")
        rows += [
            ("[cluster 1p] req/s sms / voice / whatsapp / hot (3 shards)", "",
             " / ".join(f"{row[k]['rps']:,.0f}" for k in kinds)),
            ("[cluster 1p] server CPU us per turn sms / voice / whatsapp / hot", "",
             " / ".join(str(row[k]["cpu_us_per_req"]) for k in kinds)),
            ("[cluster 1p] Redis round trips per turn sms / voice / whatsapp / hot (all shards)", "<= 2",
             " / ".join(f"{row[k]['redis_trips_per_req']}" for k in kinds)),
            ("[cluster 1p] non-2xx answers; keys per shard", "0", f"{sum(row[k]['non_2xx'] for k in kinds)}; "
             f"{' / '.join(str(n) for n in row['keys_per_shard'])}"),
        ]
        if single:
            rows.append(("[cluster 1p] / [1p] single Redis: req/s sms / voice / whatsapp", "",
                         " / ".join(f"{row[k]['rps'] / single[k]['rps']:.2f}" for k in kinds[:3])))
    c = report["compile"]
    rows.append(("compile: shipped flows s / 1,000-state flow s / its peak MB (kept MB)", "< 1 s, < 50 MB",
                 f"{c.get('shipped_flows_s')} / {c.get('states_1000_s')} / {c.get('states_1000_peak_mb')} "
                 f"({c.get('states_1000_kept_mb')})"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{'figure'.ljust(w0)} | {'target'.ljust(w1)} | measured ({report['sha']})")
    print(f"{'-' * w0}-|-{'-' * w1}-|---------")
    for name, target, value in rows:
        print(f"{name.ljust(w0)} | {target.ljust(w1)} | {value}")


if __name__ == "__main__":
    sys.exit(main())
