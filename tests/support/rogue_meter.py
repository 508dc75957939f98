"""A rogue "meter" for abuse tests (no tests here): a small raw asyncio HTTP server that logs
the gateway in like an eGauge and then answers ``/api/register`` however the test says --
valid JSON, any bytes, bodies that never end or trickle, HTML error pages, redirects, bytes
that are not HTTP at all. It parses just enough HTTP/1.1 to read the gateway's requests; what
it sends is written byte by byte as the test wants it, which no well-behaved server would do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]

REALM = "eGauge Administration"


def _jwt() -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    claims = {"usr": "owner", "beg": int(time.time()), "ltm": 600}
    return f"{b64({'typ': 'JWT', 'alg': 'HS256'})}.{b64(claims)}.c2lnbmF0dXJl"


def register_reply(ts: float | None = None) -> dict[str, Any]:
    """A valid ``/register?rate&time=now`` reply with two registers."""
    stamp = f"{time.time() if ts is None else ts:.6f}"
    return {"ts": stamp,
            "registers": [{"name": "Grid", "type": "P", "idx": 0, "did": 0, "rate": 1200.5},
                          {"name": "Solar+", "type": "P", "idx": 1, "did": 1, "rate": 800}],
            "ranges": [{"ts": stamp.split(".")[0], "delta": 1,
                        "rows": [["3600000000", "7200000000"]]}]}


def response(status: int, body: bytes, content_type: str = "application/json",
             headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def send(data: bytes) -> Answer:
    """Answer with exactly these bytes (a whole response, or anything else)."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
    return answer


def json_body(value: Any, status: int = 200) -> Answer:
    return send(response(status, json.dumps(value).encode()))


def endless(chunk: bytes = b"[" * 65536, declared: int | None = None) -> Answer:
    """A 200 reply whose body never ends: chunked, or with a ``declared`` Content-Length
    that it then never reaches."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {declared}\r\n\r\n" if declared is not None \
            else "Transfer-Encoding: chunked\r\n\r\n"
        writer.write(head.encode())
        framed = chunk if declared is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
        while True:
            writer.write(framed)
            await writer.drain()
    return answer


def trickle(body: bytes, every_s: float) -> Answer:
    """A valid reply whose body comes one byte every ``every_s``."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(response(200, body)[:-len(body)])
        for i in range(len(body)):
            writer.write(body[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every_s)
    return answer


@dataclass
class RogueMeter:
    """``async with RogueMeter() as rogue: rogue.url``; set :attr:`answer` at any time."""

    answer: Answer = field(default_factory=lambda: json_body(register_reply()))
    host: str = "127.0.0.1"
    port: int = 0
    requests: int = 0  # /api/register requests seen
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> RogueMeter:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # ends every answer still being written
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                request = await self._request(reader)
                if request is None:
                    return
                method, path = request
                if path.startswith("/api/auth/unauthorized"):
                    body = {"rlm": REALM, "nnc": "nonce-1", "error": "Authentication required."}
                    writer.write(response(401, json.dumps(body).encode()))
                elif path.startswith("/api/auth/login") and method == "POST":
                    writer.write(response(200, json.dumps({"jwt": _jwt()}).encode()))
                elif path.startswith("/api/auth/logout"):
                    writer.write(response(200, b'{"status": "OK"}'))
                else:
                    self.requests += 1
                    await self.answer(writer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def _request(self, reader: asyncio.StreamReader) -> tuple[str, str] | None:
        """The method and target of the next request (its body read and dropped)."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith("content-length:")), 0)
        if length:
            await reader.readexactly(length)
        return method, target


@contextlib.asynccontextmanager
async def rogue_meter(answer: Answer | None = None) -> AsyncIterator[RogueMeter]:
    async with RogueMeter() as rogue:
        if answer is not None:
            rogue.answer = answer
        yield rogue
