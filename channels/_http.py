"""A lean HTTP/1.1 client for the providers' REST APIs, on the event loop.

    http = LeanHttp(timeout=5.0)
    response = await http.request("POST", url, {"Content-Type": "application/json"}, body)
    response.status, response.body, response.text()
    await http.close()

Why: a WhatsApp reply sent through `requests` in a worker thread (heyoo's transport) cost
~900 µs of CPU per message here (thread hand-off, urllib3's pool, header casing, ...): more
than the whole turn that produced it. This client keeps connections alive per origin,
writes a request in one call and parses the answer with `httptools` (the parser uvicorn
uses): ~5-10x less CPU per call.

What `requests` would do that matters is kept: certificates from REQUESTS_CA_BUNDLE /
CURL_CA_BUNDLE, else certifi's bundle; a URL that `requests` would send through a proxy
(HTTP(S)_PROXY, NO_PROXY) is reported by `proxied(url)` so the caller uses `requests` for it.
`timeout` bounds the whole call (connect, send, answer). A connection is reused only after a
complete answer the server did not mark `Connection: close`; a call never resends anything
by itself (a provider call may not be idempotent): errors go to the caller.

Errors: `TimeoutError` when the call took longer than `timeout` (its connection is dropped),
`ConnectionError` (an `OSError`) when the connection failed or the answer was unreadable.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import httptools

__all__ = ["HttpResponse", "LeanHttp"]

_MAX_IDLE_PER_ORIGIN = 8

Origin = tuple[str, str, int]  # scheme, host, port


class HttpResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _Connection(asyncio.Protocol):
    """One socket; one call at a time (HTTP/1.1 without pipelining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    # asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ConnectionError(f"unreadable HTTP answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(ConnectionError(f"connection closed before the answer ended ({exc or 'by the server'})"))

    # httptools callbacks -------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        response = HttpResponse(self.parser.get_status_code(), self.headers, b"".join(self.body))
        self.headers, self.body = {}, []
        if not self.parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # calls ---------------------------------------------------------------------------
    def call(self, data: bytes) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None
        self.waiter = self.loop.create_future()
        self.parser = httptools.HttpResponseParser(self)  # a fresh parser per answer
        self.transport.write(data)
        return self.waiter

    def fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class LeanHttp:
    """Keep-alive connections per origin; one `request` at a time per connection."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._targets: dict[str, tuple[Origin, str]] = {}
        self._ssl: ssl.SSLContext | None = None

    @staticmethod
    def proxied(url: str) -> bool:
        """Whether `requests` would send `url` through a proxy (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY)."""
        from requests.utils import get_environ_proxies, select_proxy

        return select_proxy(url, get_environ_proxies(url)) is not None

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes = b"") -> HttpResponse:
        origin, target = self._target(url)
        scheme, host, port = origin
        default_port = 443 if scheme == "https" else 80
        head = [f"{method} {target} HTTP/1.1\r\nHost: {host if port == default_port else f'{host}:{port}'}\r\n"
                f"Content-Length: {len(body)}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in headers.items()]
        head.append("\r\n")
        data = "".join(head).encode("latin-1") + body
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection(origin)
                response = await conn.call(data)
        except BaseException:
            if conn is not None:
                conn.close()  # its state is unknown (half an answer, a request in flight)
            raise
        if not conn.closed:
            idle = self._idle.setdefault(origin, collections.deque())
            if len(idle) < _MAX_IDLE_PER_ORIGIN:
                idle.append(conn)
            else:
                conn.close()
        return response

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                if not conn.loop.is_closed():
                    conn.close()
        self._idle.clear()

    def _target(self, url: str) -> tuple[Origin, str]:
        known = self._targets.get(url)
        if known is not None:
            return known
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: only absolute http:// and https:// URLs can be called")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        known = (parts.scheme, parts.hostname, port), target
        if len(self._targets) >= 1024:  # URLs carry ids: keep the cache bounded
            self._targets.clear()
        self._targets[url] = known
        return known

    async def _connection(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.loop is loop:
                return conn
            if not conn.loop.is_closed():
                conn.close()
        scheme, host, port = origin
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(loop), host, port,
                ssl=self._ssl_context() if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None,
            )
        except ssl.SSLError as exc:
            raise ConnectionError(f"TLS with {host}:{port} failed ({exc})") from exc
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        """The certificates `requests` would trust: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's."""
        if self._ssl is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if not bundle:
                import certifi

                bundle = certifi.where()
            if os.path.isdir(bundle):
                self._ssl = ssl.create_default_context(capath=bundle)
            else:
                self._ssl = ssl.create_default_context(cafile=bundle)
        return self._ssl
