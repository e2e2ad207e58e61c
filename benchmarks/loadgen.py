"""Load generator: signed provider webhooks over raw asyncio streams (HTTP/1.1 keep-alive).

    python benchmarks/loadgen.py --url http://127.0.0.1:8000 --scenario sms --seconds 10 \
        --connections 64 [--rate 1000] [--conversations N] [--seed S]

Runs in its own process (the server's CPU is measured separately). Each connection walks
conversations one after another; a conversation's turns are sequential (the next webhook
is sent after the reply to the previous one). `--rate` paces the whole run at that many
requests per second (open loop per connection); without it, closed loop as fast as the
server answers. Prints one JSON line: requests, seconds, req/s, p50/p99 ms, status counts.

Scenarios: bare, skeleton (baselines.py), sms, voice, whatsapp, hot (one conversation,
every connection at once: the lock path), booking (each conversation walks
dental_booking to a booked slot).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator

PUBLIC_URL = "https://bot.example.com"
AUTH_TOKEN = "test-auth-token-0123456789"
APP_SECRET = "meta-app-secret-0123456789"
ACCOUNT = "AC" + "0" * 31 + "1"
CLINIC = "+15555550100"
WA_PHONE_ID = "106540352242922"
_STEP = re.compile(rb'action="[^"]*?/webhooks/twilio/voice/gather\?step=([^"&]+)"')
_validator = RequestValidator(AUTH_TOKEN)

Request = tuple[str, bytes, dict[str, str]]


class _Multi(dict[str, list[str]]):
    def getall(self, name: str) -> list[str]:
        return self[name]


def twilio_signed(path: str, form: list[tuple[str, str]]) -> Request:
    params = _Multi()
    for k, v in form:
        params.setdefault(k, []).append(v)
    sig = _validator.compute_signature(PUBLIC_URL + path, params)
    return path, urlencode(form).encode(), {"X-Twilio-Signature": sig,
                                            "Content-Type": "application/x-www-form-urlencoded"}


def sms(body: str, sid: str, sender: str) -> Request:
    form = [
        ("ToCountry", "US"), ("ToState", "NY"), ("SmsMessageSid", sid), ("NumMedia", "0"), ("ToCity", ""),
        ("FromZip", "10001"), ("SmsSid", sid), ("FromState", "NY"), ("SmsStatus", "received"),
        ("FromCity", "NEW YORK"), ("Body", body), ("FromCountry", "US"), ("To", CLINIC),
        ("MessagingServiceSid", "MG" + "c3" * 16), ("ToZip", ""), ("NumSegments", "1"), ("MessageSid", sid),
        ("AccountSid", ACCOUNT), ("From", sender), ("ApiVersion", "2010-04-01"),
    ]
    return twilio_signed("/webhooks/twilio/sms", form)


def voice(call_sid: str, caller: str, path: str = "/webhooks/twilio/voice", query: str = "",
          **extra: str) -> Request:
    form = [
        ("AccountSid", ACCOUNT), ("ApiVersion", "2010-04-01"), ("CallSid", call_sid),
        ("CallStatus", "in-progress" if extra else "ringing"), ("Called", CLINIC), ("CalledCountry", "US"),
        ("Caller", caller), ("CallerCountry", "US"), ("Direction", "inbound"), ("From", caller),
        ("FromCountry", "US"), ("To", CLINIC), ("ToCountry", "US"), *extra.items(),
    ]
    full = f"{path}?{query}" if query else path
    return twilio_signed(full, form)


def whatsapp(text: str, wamid: str, user: str) -> Request:
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": WA_PHONE_ID},
            "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": user}],
            "messages": [{"from": user, "id": wamid, "timestamp": "1764072000", "type": "text",
                          "text": {"body": text}}]}}]}]}
    body = json.dumps(payload, separators=(",", ":")).encode()
    sig = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return "/webhooks/whatsapp", body, {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}


def booking_phrase(n: int, start: date) -> str:
    """A distinct bookable weekday morning/afternoon slot per conversation."""
    per_day = 16  # 08:00 .. 15:30 every 30 min
    day, k = divmod(n, per_day)
    d = start
    for _ in range(day + 1):
        d += timedelta(days=1)
        while d.weekday() >= 5 or (d.month, d.day) in ((12, 25), (1, 1)):
            d += timedelta(days=1)
    hour, half = 8 + k // 2, (k % 2) * 30
    suffix = "am" if hour < 12 else "pm"
    h12 = hour if hour <= 12 else hour - 12
    return f"{d:%B} {d.day} {d.year} at {h12}:{half:02d}{suffix}"


# ---- the wire -------------------------------------------------------------------------------


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, req: Request) -> tuple[int, bytes]:
        path, body, headers = req
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(head.encode() + b"\r\n" + body)
        assert self.reader is not None
        try:
            status_line = await self.reader.readuntil(b"\r\n")
            raw_headers = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            return -1, b""
        length = 0
        for line in raw_headers.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length) if length else b""
        return int(status_line.split(b" ", 2)[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ---- conversations ------------------------------------------------------------------------


Walk = Callable[[int, str], AsyncIterator[Request]]


def make_walk(scenario: str, run_id: str, start: date) -> Callable[[Conn, int], Any]:
    """A coroutine function (conn, n) -> list of (status, latency) for conversation n."""

    async def sms_walk(conn: Conn, n: int, record: Callable[[int, float], None]) -> None:
        who = f"+1{5550000000 + (int(run_id) % 4000) * 100_000 + n:010d}"
        for i, text in enumerate(["hi", "1", "Alex Morgan", "restart", "1", "Sam Lee", "restart"]):
            await timed(conn, sms(text, f"SM{run_id}{n:08d}{i:02d}", who), record)

    async def booking_walk(conn: Conn, n: int, record: Callable[[int, float], None]) -> None:
        who = f"+1{5560000000 + (int(run_id) % 4000) * 100_000 + n:010d}"
        for i, text in enumerate(["hi", "1", "Alex Morgan", "cleaning", booking_phrase(n, start), "1"]):
            _status, body = await timed(conn, sms(text, f"SM{run_id}{n:08d}{i:02d}", who), record)
            if i == 5 and b"booked" in body:
                record(-2, 0.0)  # a booking made

    async def voice_walk(conn: Conn, n: int, record: Callable[[int, float], None]) -> None:
        call, caller = f"CA{run_id}{n:024x}"[:34], f"+1{(5570000000 + n):010d}"
        _, body = await timed(conn, voice(call, caller), record)
        for digits in ("1", "2"):
            m = _STEP.search(body)
            if not m:
                return
            q = "step=" + m.group(1).decode()
            _status, body = await timed(conn, voice(call, caller, "/webhooks/twilio/voice/gather", q,
                                                   Digits=digits, FinishedOnKey=""), record)

    async def whatsapp_walk(conn: Conn, n: int, record: Callable[[int, float], None]) -> None:
        user = f"1{6310000000 + (int(run_id) % 4000) * 100_000 + n:010d}"
        for i, text in enumerate(["hi", "book", "Alex Morgan", "restart"]):
            await timed(conn, whatsapp(text, f"wamid.{run_id}{n:08d}{i:02d}", user), record)

    async def hello_walk(conn: Conn, n: int, record: Callable[[int, float], None]) -> None:
        who = f"+1{5580000000 + (int(run_id) % 4000) * 100_000 + n:010d}"
        await timed(conn, sms("hi", f"SMhello{run_id}{n:010d}", who), record)

    async def hot_walk(conn: Conn, n: int, record: Callable[[int, float], None]) -> None:
        text = ("hi", "1", "Alex", "restart")[n % 4]
        await timed(conn, sms(text, f"SMhot{run_id}{n:010d}", "+15559990000"), record)

    async def fixed(conn: Conn, n: int, record: Callable[[int, float], None], path: str) -> None:
        form = [("From", "+15550001111"), ("To", CLINIC), ("Body", "hi"), ("MessageSid", f"SM{n}")]
        await timed(conn, (path, urlencode(form).encode() + b"&" + b"&".join(
            f"F{k}=v{k}".encode() for k in range(16)), {"Content-Type": "application/x-www-form-urlencoded"}),
            record)

    walks: dict[str, Any] = {
        "sms": sms_walk, "booking": booking_walk, "voice": voice_walk, "whatsapp": whatsapp_walk,
        "hot": hot_walk, "hello": hello_walk,
        "bare": lambda c, n, r: fixed(c, n, r, "/bare"), "skeleton": lambda c, n, r: fixed(c, n, r, "/skeleton"),
    }
    return walks[scenario]  # type: ignore[no-any-return]


class Pacer:
    """Hands out send times at `rate` per second across all connections (open loop)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.t0 = time.perf_counter()
        self.n = 0

    async def wait(self) -> float:
        if not self.rate:
            return time.perf_counter()
        due = self.t0 + self.n / self.rate
        self.n += 1
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return due  # latency counts from the intended send time (no coordinated omission)


_pacer = Pacer(None)


async def timed(conn: Conn, req: Request, record: Callable[[int, float], None]) -> tuple[int, bytes]:
    sent = await _pacer.wait()
    status, body = await conn.request(req)
    record(status, time.perf_counter() - sent)
    return status, body


async def run(url: str, scenario: str, seconds: float, connections: int, rate: float | None,
              conversations: int | None, run_id: str) -> dict[str, Any]:
    global _pacer
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    walk = make_walk(scenario, run_id, date.today())
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    bookings = 0
    counter = itertools.count()
    deadline = time.perf_counter() + seconds

    def record(status: int, latency: float) -> None:
        nonlocal bookings
        if status == -2:
            bookings += 1
            return
        statuses[status] = statuses.get(status, 0) + 1
        latencies.append(latency)

    async def worker() -> None:
        conn = Conn(host, port)
        try:
            while time.perf_counter() < deadline:
                n = next(counter)
                if conversations is not None and n >= conversations:
                    return
                await walk(conn, n, record)
        finally:
            await conn.close()

    _pacer = Pacer(rate)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {"scenario": scenario, "requests": len(latencies), "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "bookings": bookings}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--scenario", required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rate", type=float, default=None)
    p.add_argument("--conversations", type=int, default=None)
    p.add_argument("--run-id", default=str(int(time.time() * 1000) % 10**9))
    a = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    seconds = a.seconds if a.conversations is None else 3600.0
    result = asyncio.run(run(a.url, a.scenario, seconds, a.connections, a.rate, a.conversations, a.run_id))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
