"""channels/_http.py: the lean HTTP/1.1 client the WhatsApp adapter sends with, against a
scripted server on loopback: keep-alive reuse, `Connection: close`, chunked answers, the
timeout, a connection cut mid-answer, and which URLs `requests` would proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from channels._http import LeanHttp


class Scripted:
    """Answers each request with the next scripted raw answer; counts connections."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.connections = 0
        self.requests: list[bytes] = []
        self.delay = 0.0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes = b'{"ok": true}', *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), head.encode(), body)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Scripted, str]]:
    scripted = Scripted([])
    srv = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield scripted, f"http://127.0.0.1:{port}"
    srv.close()


async def test_a_post_goes_out_whole_and_keep_alive_connections_are_reused(server: tuple[Scripted, str]) -> None:
    scripted, base = server
    scripted.answers += [ok(b'{"n": 1}'), ok(b'{"n": 2}')]
    http = LeanHttp(timeout=2.0)
    first = await http.request("POST", f"{base}/v1/x?a=b", {"Content-Type": "application/json"}, b'{"hi": 1}')
    second = await http.request("POST", f"{base}/v1/y", {}, b"")
    assert (first.status, first.body, second.body) == (200, b'{"n": 1}', b'{"n": 2}')
    assert scripted.connections == 1
    request = scripted.requests[0]
    assert request.startswith(b"POST /v1/x?a=b HTTP/1.1\r\n")
    assert f"Host: {base.removeprefix('http://')}\r\n".encode() in request
    assert b"Content-Length: 9\r\n" in request and b"Content-Type: application/json\r\n" in request
    assert request.endswith(b'\r\n\r\n{"hi": 1}')
    await http.close()


async def test_an_answer_marked_connection_close_is_not_reused(server: tuple[Scripted, str]) -> None:
    scripted, base = server
    scripted.answers += [ok(b"1", "Connection: close"), ok(b"2")]
    http = LeanHttp(timeout=2.0)
    assert (await http.request("POST", f"{base}/", {})).body == b"1"
    assert (await http.request("POST", f"{base}/", {})).body == b"2"
    assert scripted.connections == 2
    await http.close()


async def test_chunked_answers_and_error_statuses_are_read_whole(server: tuple[Scripted, str]) -> None:
    scripted, base = server
    scripted.answers += [b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
                         b"\r\n5\r\n{\"err\r\n4\r\nor\":\r\n3\r\n 1}\r\n0\r\n\r\n", ok()]
    http = LeanHttp(timeout=2.0)
    answer = await http.request("POST", f"{base}/", {})
    assert (answer.status, answer.text(), answer.headers["content-type"]) == (400, '{"error": 1}', "application/json")
    assert (await http.request("POST", f"{base}/", {})).status == 200  # the connection is still good
    assert scripted.connections == 1
    await http.close()


async def test_a_slow_answer_is_a_timeout_and_its_connection_is_dropped(server: tuple[Scripted, str]) -> None:
    scripted, base = server
    scripted.answers += [ok(b"late"), ok(b"fresh")]
    scripted.delay = 0.5
    http = LeanHttp(timeout=0.1)
    with pytest.raises(TimeoutError):
        await http.request("POST", f"{base}/", {})
    scripted.delay = 0.0
    http.timeout = 2.0
    assert (await http.request("POST", f"{base}/", {})).body == b"fresh"  # not the late answer
    assert scripted.connections == 2
    await http.close()


async def test_a_connection_cut_before_the_answer_ends_is_a_connection_error(server: tuple[Scripted, str]) -> None:
    scripted, base = server
    scripted.answers += [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort"]
    http = LeanHttp(timeout=2.0)
    with pytest.raises(ConnectionError):
        await http.request("POST", f"{base}/", {})
    await http.close()


async def test_nothing_listening_is_a_connection_error() -> None:
    http = LeanHttp(timeout=2.0)
    with pytest.raises(ConnectionError):
        await http.request("POST", "http://127.0.0.1:9/", {})


def test_proxied_is_what_requests_would_do(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not LeanHttp.proxied("https://graph.facebook.com/v26.0/1/messages")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert LeanHttp.proxied("https://graph.facebook.com/v26.0/1/messages")
    assert not LeanHttp.proxied("http://graph.local/v26.0/1/messages")  # only https is proxied
    monkeypatch.setenv("NO_PROXY", "graph.facebook.com")
    assert not LeanHttp.proxied("https://graph.facebook.com/v26.0/1/messages")
