"""Processes for fault tests and benchmarks: a private redis-server on a free loopback port
and orchestrator server processes (uvicorn) pointed at it, each stopped by its own pid.

    with RedisServer() as redis:                 # --save "" --appendonly no, never port 6379
        redis.pause(); redis.resume()            # SIGSTOP / SIGCONT
        redis.kill(); redis.restart()            # kill -9, then the same port again
        with ServerProcess(server_env(redis.url, flows_dir, ...)) as server:
            server.url                           # "http://127.0.0.1:PORT"
            server.kill()                        # kill -9

Nothing here touches the shared Redis on 6379 or any process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from ports import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
KILL_APP = "tests.faults.kill_points:create_app"  # a server that dies at KILL_AT (kill_points.py)

PUBLIC_URL = "https://bot.example.com"
AUTH_TOKEN = "test-auth-token-0123456789"
ACCOUNT_SID = "AC" + "0" * 31 + "1"
APP_SECRET = "meta-app-secret-0123456789"
VERIFY_TOKEN = "verify-token-abc123"
WA_TOKEN = "EAAG-test-token-abcdef"
WA_PHONE_ID = "106540352242922"
CLINIC = "+15555550100"


class RedisServer:
    """A private, non-persistent redis-server on a free port (its pid kept)."""

    def __init__(self, port: int | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed; apt-get install -y redis-server")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="orch-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        self.stopped = False
        return self

    def kill(self) -> None:
        """kill -9 (a crash: nothing flushed, the port closes)."""
        if self.proc is not None and self.proc.poll() is None:
            if self.stopped:
                self.resume()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def cli(self, *args: str) -> str:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            return str(client.execute_command(*args))
        finally:
            client.close()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def server_env(
    redis_url: str | None, flows_dir: str | Path, *, prefix: str = "orch", twilio_api_base: str | None = None,
    whatsapp_api_base: str | None = None, calendar_db: str | Path | None = None, **extra: str,
) -> dict[str, str]:
    """A server's environment: test secrets, the public URL the tests sign for, short locks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "TWILIO_", "WHATSAPP_"))}
    env.update({
        "ORCHESTRATOR_FLOWS_DIR": str(flows_dir),
        "ORCHESTRATOR_PUBLIC_URL": PUBLIC_URL,
        "ORCHESTRATOR_KEY_PREFIX": prefix,
        "ORCHESTRATOR_DEFAULT_FLOW": "dental_booking",
        "ORCHESTRATOR_LOCK_TTL_SECONDS": "2",
        "ORCHESTRATOR_LOCK_WAIT_SECONDS": "3",
        "ORCHESTRATOR_TIMER_POLL_SECONDS": "0.1",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": CLINIC,
        "TWILIO_API_BASE": twilio_api_base or "http://127.0.0.1:9",
        "WHATSAPP_TOKEN": WA_TOKEN,
        "WHATSAPP_PHONE_NUMBER_ID": WA_PHONE_ID,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "WHATSAPP_API_BASE": whatsapp_api_base or "http://127.0.0.1:9",
        "PYTHONUNBUFFERED": "1",
    })
    if redis_url:
        env["ORCHESTRATOR_REDIS_URL"] = redis_url
    if calendar_db:
        env["ORCHESTRATOR_CALENDAR_DB"] = str(calendar_db)
    env.update(extra)
    return env


class ServerProcess:
    """`uvicorn orchestrator.web.app:create_app --factory` in a subprocess, on a free port.

    stdout/stderr go to a log file (`log_text()`), so tests can scan what was logged."""

    def __init__(self, env: Mapping[str, str], *, workers: int = 1, app: str = "orchestrator.web.app:create_app",
                 port: int | None = None, ready_path: str = "/health", cwd: Path = ROOT) -> None:
        self.env = dict(env)
        self.cwd = cwd  # another checkout of the code (an older release) runs from its own folder
        self.workers = workers
        self.app = app
        self.port = port or free_port()
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="orch-server-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        cmd = [PYTHON, "-m", "uvicorn", self.app, "--factory", "--host", "127.0.0.1", "--port", str(self.port),
               "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        return cmd

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=1.0).status_code < 500:
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log_text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        """The pids doing the work: the process itself, or its uvicorn worker children."""
        if self.workers <= 1:
            return [self.pid]
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        # uvicorn's multiprocess supervisor also forks a resource tracker; workers run the app
        return [p for p in children if _cmdline(p).find("multiprocessing.resource_tracker") < 0]

    def kill(self) -> None:
        """kill -9 the process group (the workers too)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_cli(args: list[str], env: Mapping[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", *args], cwd=ROOT, env=dict(env), capture_output=True, text=True,
                          timeout=timeout)


def session_key(prefix: str, sid: str) -> str:
    return f"{prefix}:{{{sid}}}:s"


def decode_session(raw: Any) -> Any:
    import msgspec

    from orchestrator.model import Session

    return msgspec.msgpack.decode(raw, type=Session)


# ---- signed webhooks as the providers send them -------------------------------------------


def signed_sms(body: str, sid: str, sender: str, to: str = CLINIC) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of a signed Twilio SMS webhook."""
    from urllib.parse import urlencode

    from fakes.signing import sms_form, twilio_signature

    form = sms_form(body, sid=sid, sender=sender, to=to)
    path = "/webhooks/twilio/sms"
    headers = {"X-Twilio-Signature": twilio_signature(AUTH_TOKEN, PUBLIC_URL + path, form),
               "Content-Type": "application/x-www-form-urlencoded"}
    return path, urlencode(form).encode(), headers


def signed_whatsapp(text: str, wamid: str, user: str) -> tuple[str, bytes, dict[str, str]]:
    from fakes.signing import meta_body, meta_signature, wa_envelope, wa_text, wa_value

    contacts = [{"profile": {"name": "Kerry Fisher"}, "wa_id": user}]
    body = meta_body(wa_envelope(wa_value([wa_text(text, wamid=wamid, sender=user)], contacts=contacts)))
    return "/webhooks/whatsapp", body, {"X-Hub-Signature-256": meta_signature(body, APP_SECRET),
                                        "Content-Type": "application/json"}


def twiml_messages(body: bytes) -> list[str]:
    import xml.etree.ElementTree as ET

    return [m.text or "" for m in ET.fromstring(body) if m.tag in ("Message", "Say")]


# ---- a private Redis with two server processes (fault tests) ---------------------------

ECHO_NUMBER = "+15555550177"  # routed to echo_loop: a conversation that never ends
ECHO_FLOW = """\
flow: echo_loop
title: Echo
start: listen
intents:
  bye: {match: [goodbye], goto: done}
states:
  listen:
    ask: "Say something."
    input: text
    save: said
    next: echo
  echo:
    say: "Heard {{ said }}."
    next: listen
  done:
    say: "Bye."
    end: finished
"""


class Cluster:
    """Two server processes (a, b) on one private Redis, plus the fake providers."""

    def __init__(self, redis: RedisServer, graph: Any, twilio: Any, workdir: Path) -> None:
        self.redis = redis
        self.graph = graph
        self.twilio = twilio
        self.workdir = workdir
        self.prefix = f"fault-{uuid.uuid4().hex[:8]}"
        self.servers: list[ServerProcess] = []
        self.flows = workdir / "flows"
        self.flows.mkdir(exist_ok=True)
        shutil.copy(ROOT / "flows" / "dental_booking.yaml", self.flows)
        (self.flows / "echo_loop.yaml").write_text(ECHO_FLOW)

    def env(self, **extra: str) -> dict[str, str]:
        extra.setdefault("ORCHESTRATOR_ROUTES", f"{ECHO_NUMBER}=echo_loop")
        return server_env(self.redis.url, self.flows, prefix=self.prefix, twilio_api_base=self.twilio.url,
                          whatsapp_api_base=self.graph.url, calendar_db=self.workdir / "calendar.sqlite3", **extra)

    def spawn(self, app: str = "orchestrator.web.app:create_app", **extra: str) -> ServerProcess:
        server = ServerProcess(self.env(**extra), app=app).start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
