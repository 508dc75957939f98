"""Test-side HTTP helpers (no tests here): a WebServer on a thread of its own, raw-socket
exchanges, responses read back with h11 (as a client), and a well-behaved client that keeps
asking while a test abuses the server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType

import h11
import httpx

from gateway.support.http import Handler, HttpLimits, HttpStats, Request, Response, WebServer

METRICS_BODY = b"# a scrape of about 4 KiB\n" + b"egauge_test_value 1\n" * 200


def endpoint_like(req: Request) -> Response:
    """Answers like the gateway's endpoint: /healthz, /metrics (4 KiB), 404 and 405."""
    if req.path not in ("/healthz", "/metrics"):
        return Response(404, b"not found\n")
    if req.method not in ("GET", "HEAD"):
        return Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
    if req.path == "/metrics":
        return Response(200, METRICS_BODY)
    return Response(200, b'{"status":"ok"}', "application/json")


def echo(req: Request) -> Response:
    """The request as JSON (body as text), for tests of what the server parsed."""
    value = {"method": req.method, "path": req.path, "query": [list(p) for p in req.query],
             "raw_query": req.raw_query, "body": req.body.decode("latin-1"),
             "version": req.version, "keep_alive": req.keep_alive,
             "host": req.headers.get("host"), "x": req.headers.get("x-twice")}
    return Response(200, json.dumps(value).encode(), "application/json")


class ThreadedWebServer:
    """A :class:`WebServer` on its own event loop in a thread, for blocking clients."""

    def __init__(self, handler: Handler, limits: HttpLimits | None = None) -> None:
        self.server = WebServer(handler, "127.0.0.1", 0, limits=limits)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="web-server", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def stats(self) -> HttpStats:
        return self.server.stats

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.server.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def __enter__(self) -> ThreadedWebServer:
        self._thread.start()
        assert self._ready.wait(10), "the web server thread did not start"
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def responses(raw: bytes, method: bytes = b"GET") -> list[Reply]:
    """Every complete response in ``raw`` (what one connection received), read with h11."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(raw)
    conn.receive_data(b"")
    out: list[Reply] = []
    while True:
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        reply: Reply | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return out
            if isinstance(event, h11.Response):
                reply = Reply(event.status_code, {k.decode(): v.decode("latin-1")
                                                  for k, v in event.headers}, b"")
            elif isinstance(event, h11.Data) and reply is not None:
                reply.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif not isinstance(event, h11.InformationalResponse):
                return out  # closed, or the bytes end mid-response
        assert reply is not None
        out.append(reply)
        if conn.their_state is not h11.DONE:
            return out
        conn.start_next_cycle()


def read_to_eof(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (a reset counts as the end)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port: int, data: bytes, *, half_close: bool = True,
             timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection (then shut the write side) and read until the
    server closes; TimeoutError when it does not close within ``timeout``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused early; its answer may still be there
        return read_to_eof(sock, timeout)


@dataclass
class GoodClient:
    """Asks ``url`` over and over (keep-alive, a 5 s timeout) from a thread; every answer
    must have ``status``. ``failures`` lists anything else."""

    url: str
    status: int = 200
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    got = client.get(self.url)
                    outcome = "" if got.status_code == self.status else f"status {got.status_code}"
                except httpx.HTTPError as exc:
                    outcome = repr(exc)
                with self._cond:
                    if outcome:
                        self.failures.append(outcome)
                    else:
                        self.answers += 1
                    self._cond.notify_all()

    def answered(self, more: int = 3, timeout: float = 30.0) -> None:
        """Wait until ``more`` further answers arrived (fail the test otherwise)."""
        with self._cond:
            target = self.answers + more
            ok = self._cond.wait_for(lambda: self.answers >= target or bool(self.failures),
                                     timeout)
        assert ok, f"the well-behaved client got no answer within {timeout} s"
        assert not self.failures, self.failures


@contextmanager
def good_client(url: str, status: int = 200) -> Iterator[GoodClient]:
    """A :class:`GoodClient` running for the block; it must have been answered at the end."""
    client = GoodClient(url, status)
    thread = threading.Thread(target=client._run, name="good-client", daemon=True)
    thread.start()
    try:
        client.answered(1)
        yield client
        client.answered(1)
    finally:
        client._stop.set()
        thread.join(15)
    assert not client.failures, client.failures
