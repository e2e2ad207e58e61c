"""The plumbing of the connector fakes (fake_crm.py, fake_google.py): a threaded HTTP server
on 127.0.0.1 (a free port) handing every request to one function, and a JSON reply."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up (the hanging-server tests)


def serve(dispatch: Callable[[BaseHTTPRequestHandler], None]) -> tuple[QuietServer, threading.Thread]:
    """A server calling `dispatch(handler)` for every GET/POST/PUT/PATCH/DELETE, and the thread
    to start it with (`thread.start()`); stop with `server.shutdown(); server.server_close()`."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            dispatch(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    server = QuietServer(("127.0.0.1", 0), Handler)
    return server, threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)


def send_json(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
    """Answer `body` as JSON (None: an empty body, e.g. for a 204)."""
    data = b"" if body is None else json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)
