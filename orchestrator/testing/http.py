"""A fake provider: a small threaded HTTP server on 127.0.0.1 (a free port) that records every
request and answers through a handler function, or a scripted reply queued by the test.

    with FakeHTTPServer(handler) as server:     # handler(Recorded) -> (status, headers, body)
        server.url                              # "http://127.0.0.1:54321"
        server.script(503, {"error": ...})      # the next request gets this instead
        server.accept_then_drop(2.0)            # the next request is handled (a message created),
                                                # then its answer is held 2 s and never written
        server.requests                         # every Recorded request, in order
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in parse_qsl(self.body.decode(), keep_blank_values=True):
            out.setdefault(name, []).append(value)
        return out


Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[Recorded], Reply]


def json_reply(status: int, payload: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


@dataclass
class FakeHTTPServer:
    handler: Handler
    requests: list[Recorded] = field(default_factory=list)
    delay_seconds: float = 0.0
    _scripted: deque[Reply] = field(default_factory=deque)
    _drops: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed
            # ACK hold each keep-alive response ~40 ms (seen as a slow outbox in the benchmark)
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                rec = Recorded(
                    method=self.command, path=parts.path, query=dict(parse_qsl(parts.query)),
                    headers={k.lower(): v for k, v in self.headers.items()}, body=body,
                )
                with outer._lock:
                    outer.requests.append(rec)
                    scripted = outer._scripted.popleft() if outer._scripted else None
                    drop = outer._drops.popleft() if outer._drops and scripted is None else None
                if outer.delay_seconds:
                    threading.Event().wait(outer.delay_seconds)
                status, headers, payload = scripted or outer.handler(rec)
                if drop is not None:  # the provider took the request; its answer is lost
                    threading.Event().wait(drop)
                    self.close_connection = True
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one reply for the next request (JSON unless `payload` is bytes)."""
        if isinstance(payload, bytes):
            reply: Reply = (status, headers or {"Content-Type": "text/plain"}, payload)
        else:
            reply = json_reply(status, payload)
        with self._lock:
            self._scripted.append(reply)

    def accept_then_drop(self, hold_seconds: float = 0.0) -> None:
        """The next request is handled as usual (the provider takes it), then no answer comes:
        after `hold_seconds` (past the client's timeout: a timeout; 0: a reset) the connection closes."""
        with self._lock:
            self._drops.append(hold_seconds)

    def start(self) -> FakeHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
