"""The HTTP server (gateway.support.http on h11) over real sockets, in the test's event loop:
what it parses, how it frames answers, and each limit -- its status, the closed connection,
the counter and the throttled log line."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from structlog.testing import capture_logs

from gateway.support import HttpLimits, Request, Response, WebServer
from tests.support.waiting import async_wait_until
from tests.support.web import echo, responses

pytestmark = pytest.mark.integration

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def serving(handler: Callable[[Request], Response] = echo,
                  **limits: float) -> AsyncIterator[WebServer]:
    server = WebServer(handler, limits=HttpLimits(**limits))  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def connect(server: WebServer) -> Streams:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent until it closed the connection (bounded by the test's wait)."""
    return await asyncio.wait_for(reader.read(), 20)


async def send_all(server: WebServer, data: bytes) -> bytes:
    reader, writer = await connect(server)
    writer.write(data)
    await writer.drain()
    try:
        return await until_closed(reader)
    finally:
        writer.close()


async def test_requests_in_pieces_and_back_to_back() -> None:
    wire = (b"GET /api/register?reg=3+5&time=now-60%3A1%3Anow&rate HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /p%20q HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
            b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with serving() as server:
        reader, writer = await connect(server)
        for i in range(0, len(wire), 5):
            writer.write(wire[i:i + 5])
            await writer.drain()
        got = responses(await until_closed(reader))
        writer.close()
    first, second, third = (json.loads(r.body) for r in got)
    assert (first["method"], first["path"]) == ("GET", "/api/register")
    assert first["query"] == [["reg", "3+5"], ["time", "now-60:1:now"], ["rate", ""]]
    assert first["raw_query"] == "reg=3+5&time=now-60%3A1%3Anow&rate"
    assert first["keep_alive"] is True
    assert (second["method"], second["path"], second["body"]) == ("POST", "/p q", '{"a":1}')
    assert third["keep_alive"] is False
    assert [r.headers["content-type"] for r in got] == ["application/json"] * 3
    assert server.stats.answered == 3


async def test_chunked_body_repeated_fields_and_http_1_0() -> None:
    async with serving() as server:
        chunked = responses(await send_all(server, (
            b"PUT /api/config/net/hostname HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\nX-Twice: a\r\nX-Twice: b\r\nConnection: close\r\n\r\n"
            b"4\r\n\"met\r\n5\r\ner-7\"\r\n0\r\n\r\n")))
        old = responses(await send_all(server, b"GET /old HTTP/1.0\r\n\r\n"))
    assert len(chunked) == 1
    assert json.loads(chunked[0].body)["body"] == '"meter-7"'
    assert json.loads(chunked[0].body)["x"] == "a, b"
    assert len(old) == 1  # and the server closed: an HTTP/1.0 request has no keep-alive
    assert json.loads(old[0].body)["version"] == "HTTP/1.0"
    assert json.loads(old[0].body)["keep_alive"] is False


async def test_head_declares_the_length_without_a_body() -> None:
    async with serving(lambda req: Response(200, b"x" * 100)) as server:
        raw = await send_all(server, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 100" in head.lower()
    assert rest == b""


async def test_expect_100_continue() -> None:
    async with serving() as server:
        reader, writer = await connect(server)
        writer.write(b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: 3\r\nConnection: close\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) \
            == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"abc")
        got = responses(await until_closed(reader), b"POST")
        writer.close()
    assert json.loads(got[0].body)["body"] == "abc"


REFUSED = [
    ("garbage", b"GARBAGE\r\n\r\n", 400),
    ("version 2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("header without colon", b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
    ("no host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("negative length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("superscript length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ²\r\n\r\n".encode(),
     400),
    ("two lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6"
     b"\r\n\r\nabcdef", 400),
    ("declared body too large", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
     b"\r\n", 413),
    ("head too large, incomplete", b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000, 431),
    ("head too large, complete", b"GET / HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(200)) + b"\r\n", 431),
    ("negative chunk", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"-6\r\nabcdef\r\n0\r\n\r\n", 400),
    ("non-hex chunk", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\nabc\r\n0\r\n\r\n", 400),
    ("overflowing chunk", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"F" * 40 + b"\r\nabc\r\n", 400),
    ("chunked body too large", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n" + b"4000\r\n" + b"z" * 0x4000 + b"\r\n" + b"FFFFFFFFFFFFFFFF\r\n"
     + b"z" * 70_000, 413),
]


@pytest.mark.parametrize(("wire", "status"), [(w, s) for _, w, s in REFUSED],
                         ids=[name for name, _, _ in REFUSED])
async def test_refused_requests_get_their_status_and_the_connection_closes(
        wire: bytes, status: int) -> None:
    async with serving() as server:
        with capture_logs() as logs:
            raw = await send_all(server, wire)  # returns once the server has closed
        got = responses(raw)
        assert [r.status for r in got] == [status]
        assert got[0].headers["connection"] == "close"
        assert server.stats.rejected == {status: 1}
        assert server.stats.answered == 0
    rejected = [e for e in logs if e["event"] == "http_request_rejected"]
    assert [e["status"] for e in rejected] == [status]
    assert b"aaaa" not in json.dumps(rejected).encode()  # quoted bytes stay out of the log


async def test_identical_repeated_lengths_are_one_length() -> None:
    async with serving() as server:
        got = responses(await send_all(
            server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n"
                    b"Connection: close\r\n\r\nabc"), b"POST")
    assert json.loads(got[0].body)["body"] == "abc"


async def test_a_trickled_head_gets_408_at_its_deadline() -> None:
    async with serving(header_timeout_s=0.5) as server:
        reader, writer = await connect(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed = asyncio.ensure_future(until_closed(reader))
        while not closed.done():  # one byte every 50 ms, for as long as the server listens
            writer.write(b"a")
            await asyncio.wait([closed], timeout=0.05)
        writer.close()
        assert [r.status for r in responses(closed.result())] == [408]
        assert server.stats.timeouts == {"header": 1}
        assert server.stats.rejected == {408: 1}


async def test_a_body_that_does_not_arrive_gets_408() -> None:
    async with serving(header_timeout_s=0.5, request_timeout_s=0.5) as server:
        raw = await send_all(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                                     b"\r\nabc")
        assert [r.status for r in responses(raw)] == [408]
        assert server.stats.timeouts == {"request": 1}


async def test_idle_connections_are_closed_without_an_answer() -> None:
    async with serving(idle_timeout_s=0.3) as server:
        reader, writer = await connect(server)
        assert await until_closed(reader) == b""  # never said anything
        writer.close()
        reader, writer = await connect(server)
        writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(responses(await until_closed(reader))) == 1  # kept alive, then idle
        writer.close()
        assert server.stats.timeouts == {"idle": 2}
        assert server.stats.rejected == {}


async def test_at_the_connection_limit_the_longest_waiting_unserved_one_makes_room() -> None:
    async with serving(max_connections=3) as server:
        served = await connect(server)
        served[1].write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        await served[0].readuntil(b"}")
        oldest, younger = await connect(server), await connect(server)
        await async_wait_until(lambda: server.stats.connections == 3, what="3 connections")
        newest = await connect(server)
        assert await until_closed(oldest[0]) == b""  # never served, waiting longest
        served[1].write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b'"/again"' in await served[0].readuntil(b"}")
        newest[1].write(b"GET /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert [r.status for r in responses(await until_closed(newest[0]))] == [200]
        assert server.stats.evicted == 1
        assert server.stats.refused == 0
        for _, writer in (served, oldest, younger, newest):
            writer.close()


def send_until_blocked(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` until the peer takes no byte for the socket's timeout; bytes sent."""
    sent = 0
    view = memoryview(data)
    while sent < len(data):
        try:
            sent += sock.send(view[sent:sent + 65536])
        except TimeoutError:
            break
    return sent


async def test_a_client_that_does_not_read_is_not_read_and_then_gets_everything() -> None:
    size = 4096
    limits = HttpLimits()

    def numbered(req: Request) -> Response:
        return Response(200, req.path.encode().ljust(size, b"."))

    request = b"GET /%06d HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 4000 + b"\r\n\r\n"
    wire = b"".join(request % i for i in range(4096))  # 16 MiB of pipelined requests
    async with serving(numbered, write_timeout_s=60) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sent = await asyncio.to_thread(send_until_blocked, sock, wire)
            assert sent < len(wire)  # the server stopped taking bytes
            assert server.stats.paused >= 1
            # one read (at most 256 KiB) beyond the pipelining limit, one answer beyond the
            # write buffer's: what the server holds, not the 16 MiB
            bound = limits.max_pipelined_bytes + 256 * 1024 + limits.write_buffer_bytes + 2 * size
            assert server.held_bytes() <= bound
            complete = sent // len(request % 0)
            got = bytearray()
            sock.settimeout(20)
            while got.count(b"HTTP/1.1 200 OK") < complete:
                got += await asyncio.to_thread(sock.recv, 1 << 20)
    paths = [r.body.rstrip(b".") for r in responses(bytes(got))]
    assert paths[:complete] == [b"/%06d" % i for i in range(complete)]


async def test_a_client_that_never_reads_is_disconnected() -> None:
    async with serving(lambda req: Response(200, b"x" * 65536), write_timeout_s=0.5) as server:
        _reader, writer = await connect(server)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
        await async_wait_until(lambda: server.stats.timeouts["write"] == 1,
                               what="the write timeout")
        await async_wait_until(lambda: server.stats.connections == 0, what="the connection gone")
        writer.close()


async def test_a_failing_handler_gets_500_and_the_connection_goes_on() -> None:
    def handler(req: Request) -> Response:
        if req.path == "/boom":
            raise RuntimeError("boom")
        return Response(200, b"fine")

    async with serving(handler) as server:
        with capture_logs() as logs:
            got = responses(await send_all(
                server, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert [(r.status, r.body) for r in got] == [
            (500, b"Internal Server Error\n"), (500, b"Internal Server Error\n"), (200, b"fine")]
        assert server.stats.handler_errors == 2
    failed = [e for e in logs if e["event"] == "http_handler_failed"]
    assert len(failed) == 1  # the second one within the log interval is counted, not logged
    assert failed[0]["path"] == "/boom"


async def test_an_invalid_answer_closes_the_connection() -> None:
    async with serving(lambda req: Response(200, b"", headers=(("X-Bad", "a\r\nb"),))) as server:
        with capture_logs() as logs:
            raw = await send_all(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw == b""
    assert [e["event"] for e in logs if e["event"].startswith("http_")] == [
        "http_answer_invalid"]


async def test_a_burst_of_bad_requests_logs_one_line_and_counts_them_all() -> None:
    async with serving(log_interval_s=3600) as server:
        with capture_logs() as logs:
            for _ in range(20):
                await send_all(server, b"GARBAGE\r\n\r\n")
        assert server.stats.rejected == {400: 20}
    assert [e["event"] for e in logs] == ["http_request_rejected"]


async def test_close_drops_a_connection_that_is_not_read() -> None:
    server = WebServer(lambda req: Response(200, b"x" * 65536))
    await server.start()
    _reader, writer = await connect(server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
    await async_wait_until(lambda: server.stats.paused >= 1, what="reading paused")
    await asyncio.wait_for(server.close(), 10)
    assert server.stats.connections == 0
    writer.close()


async def test_a_pipelining_client_lets_the_others_have_their_turn() -> None:
    order: list[str] = []

    def handler(req: Request) -> Response:
        order.append(req.path)
        return Response(200, b"ok")

    async with serving(handler) as server:
        first, second = await connect(server), await connect(server)
        first[1].write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
        second[1].write(b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert [r.status for r in responses(await until_closed(second[0]))] == [200]
        first[1].close()
    # 1000 requests arrived in one read; at most max_pipelined of them went first
    assert order.index("/b") <= HttpLimits().max_pipelined
