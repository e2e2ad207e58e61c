"""Many businesses on one deployment (docs/SPEC.md §10): the SMS turn with 200 businesses loaded
against the single-business turn, and the start-up of 200 businesses.

    .venv/bin/python benchmarks/bench_businesses.py            # 3 x 10 s per figure
    .venv/bin/python benchmarks/bench_businesses.py --quick    # 3 x 3 s

Starts its own redis-server, the fake Twilio and Graph servers and the product (one process),
first as one business (ORCHESTRATOR_FLOWS_DIR), then with ORCHESTRATOR_BUSINESSES_DIR holding
200 businesses (the load hits one of them, signed with its own token, while all 200 run their
timers, outbox and reload). Start-up: BusinessRegistry.prepare + start in this process, in
memory and on Redis, and the server's time to answer /health. Writes
benchmarks/results/businesses-<sha>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "faults"), str(ROOT / "benchmarks")]

import redis  # noqa: E402
from bench_full import git_sha, measure  # noqa: E402
from fakes.graph import FakeGraph  # noqa: E402
from fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio  # noqa: E402
from faultkit import RedisServer, ServerProcess, cpu_seconds, server_env  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CLINIC = "+15555550100"  # the number loadgen's SMS scenario texts


def write_businesses(root: Path, count: int, limit: int = 0) -> dict[str, str]:
    """`count` business folders (the first owns CLINIC, signed with the test auth token); the
    environment holding their secrets."""
    env: dict[str, str] = {}
    flows = ROOT / "flows"
    for n in range(count):
        biz = f"biz{n:03d}"
        folder = root / biz / "flows"
        folder.mkdir(parents=True)
        for f in ("dental_booking.yaml", "missed_call_textback.yaml"):
            shutil.copy(flows / f, folder / f)
        number = CLINIC if n == 0 else f"+1555600{n:04d}"
        env[f"{biz.upper()}_SID"] = ACCOUNT_SID
        env[f"{biz.upper()}_TOKEN"] = AUTH_TOKEN if n == 0 else f"token-of-{biz}-0123456789"
        digest = hashlib.sha256(f"admin-{biz}".encode()).hexdigest()
        (root / biz / "business.yaml").write_text(
            f"business: {biz}\nname: Business {n}\ntimezone: America/New_York\n"
            f'numbers: {{twilio: ["{number}"]}}\ndefault_flow: dental_booking\n'
            f"credentials:\n  twilio: {{account_sid: env:{biz.upper()}_SID, auth_token: env:{biz.upper()}_TOKEN}}\n"
            f'admins:\n  - {{name: Owner, token_sha256: "{digest}", role: owner}}\n'
            + (f"limits: {{conversations_per_day: {limit}}}\n" if limit else ""))
    return env


async def startup(root: Path, env: dict[str, str], redis_url: str | None) -> dict[str, float]:
    from orchestrator.businesses.registry import BusinessRegistry
    from orchestrator.settings import AppSettings

    settings = AppSettings(businesses_dir=str(root), redis_url=redis_url, key_prefix="benchstart",
                           public_url="https://bot.example.com", environ={**env, "TWILIO_API_BASE": "http://127.0.0.1:9"})
    t0 = time.perf_counter()
    registry = BusinessRegistry(settings)
    registry.prepare()
    t1 = time.perf_counter()
    await registry.start()
    t2 = time.perf_counter()
    served = len(registry.ids())
    await registry.close()
    return {"prepare_s": round(t1 - t0, 3), "start_s": round(t2 - t1, 3), "total_s": round(t2 - t0, 3),
            "served": served}


def idle_cpu(server: ServerProcess, seconds: float = 5.0) -> float:
    """CPU per second of the server doing nothing but its background jobs (ms/s)."""
    time.sleep(1.0)
    c0 = sum(cpu_seconds(p) for p in server.worker_pids())
    time.sleep(seconds)
    return round((sum(cpu_seconds(p) for p in server.worker_pids()) - c0) / seconds * 1000, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--businesses", type=int, default=200)
    ap.add_argument("--limit", type=int, default=0, help="limits.conversations_per_day of every business (0: none)")
    a = ap.parse_args()
    seconds, runs = (3.0, 3) if a.quick else (10.0, 3)
    work = Path(tempfile.mkdtemp(prefix="bench-biz-"))
    root = work / "businesses"
    secrets = write_businesses(root, a.businesses, a.limit)
    report: dict[str, Any] = {"sha": git_sha(), "quick": a.quick, "businesses": a.businesses}
    with RedisServer() as rs, FakeGraph() as graph, FakeTwilio() as twilio:
        rds = redis.Redis(port=rs.port)
        report["startup_memory"] = asyncio.run(startup(root, secrets, None))
        report["startup_redis"] = asyncio.run(startup(root, secrets, rs.url))
        print(f"start-up of {a.businesses}: memory {report['startup_memory']}, redis {report['startup_redis']}",
              flush=True)
        base = server_env(rs.url, ROOT / "flows", prefix="single", twilio_api_base=twilio.url,
                          whatsapp_api_base=graph.url, calendar_db=work / "cal.sqlite3",
                          ORCHESTRATOR_LOCK_TTL_SECONDS="10", ORCHESTRATOR_LOCK_WAIT_SECONDS="5",
                          ORCHESTRATOR_TIMER_POLL_SECONDS="1")
        t = time.perf_counter()
        with ServerProcess(base) as server:
            report["single_server_ready_s"] = round(time.perf_counter() - t, 2)
            report["single_idle_cpu_ms_per_s"] = idle_cpu(server)
            report["single"] = measure(server, rds, "sms", runs, seconds)
        print(f"one business: {report['single']['rps']} req/s, {report['single']['cpu_us_per_req']} us/req", flush=True)
        many = {k: v for k, v in base.items() if not k.startswith(("TWILIO_ACCOUNT", "TWILIO_AUTH", "TWILIO_FROM",
                                                                    "WHATSAPP_", "ORCHESTRATOR_FLOWS_DIR",
                                                                    "ORCHESTRATOR_DEFAULT_FLOW"))}
        many.update(secrets, ORCHESTRATOR_BUSINESSES_DIR=str(root), ORCHESTRATOR_KEY_PREFIX="many")
        t = time.perf_counter()
        with ServerProcess(many) as server:
            report["server_ready_s"] = round(time.perf_counter() - t, 2)
            report["many_idle_cpu_ms_per_s"] = idle_cpu(server)
            report["many"] = measure(server, rds, "sms", runs, seconds)
        print(f"{a.businesses} businesses: {report['many']['rps']} req/s, {report['many']['cpu_us_per_req']} us/req "
              f"(server ready in {report['server_ready_s']} s)", flush=True)
    s, m = report["single"], report["many"]
    report["rps_ratio"] = round(m["rps"] / s["rps"], 3) if s["rps"] else None
    report["cpu_ratio"] = round(m["cpu_us_per_req"] / s["cpu_us_per_req"], 3) if s["cpu_us_per_req"] else None
    print(json.dumps({k: report[k] for k in ("rps_ratio", "cpu_ratio", "single_idle_cpu_ms_per_s",
                                              "many_idle_cpu_ms_per_s", "single_server_ready_s", "server_ready_s")}))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"businesses-{report['sha']}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out.relative_to(ROOT)}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
