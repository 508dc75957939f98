"""HTTP/1.1 on asyncio with the standard library only: request parsing (Content-Length or
chunked bodies, keep-alive), response rendering and a small server for synchronous handlers.

The simulator's meters and the gateway's own endpoint (``/healthz``, ``/metrics``, ...) both
speak HTTP through this module. Query strings are split on ``&`` and percent-decoded, with
``+`` kept literally, as the eGauge WebAPI's ``reg=3+5`` needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import unquote

import structlog

log = structlog.get_logger(__name__)

MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024 * 1024


class HttpError(ValueError):
    """The bytes are not an HTTP request we can answer; close after answering ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    version: str = "HTTP/1.1"
    tls: bool = False
    raw_query: str = ""

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


class Answer(Protocol):
    """Anything :func:`render` can put on the wire."""

    @property
    def status(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str: ...

    @property
    def headers(self) -> tuple[tuple[str, str], ...]: ...


@dataclass(frozen=True, slots=True)
class Response:
    """A plain HTTP response."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def split_query(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return tuple(pairs)


class RequestParser:
    """Turns a byte stream into requests, one at a time."""

    def __init__(self, tls: bool = False) -> None:
        self.tls = tls
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_request(self) -> Request | None:
        """The next complete request, None until one has arrived."""
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise HttpError("Request header too large", 431)
            return None
        try:
            head = self._buf[:end].decode("latin-1").split("\r\n")
            method, target, version = head[0].split(" ")
        except ValueError as exc:
            raise HttpError("Malformed request line", 400) from exc
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise HttpError("HTTP version not supported", 505)
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise HttpError("Malformed header", 400)
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            found = self._chunked(start)
            if found is None:
                return None
            body, stop = found
        else:
            length_text = headers.get("content-length", "0")
            if not length_text.isdigit():
                raise HttpError("Bad Content-Length", 400)
            length = int(length_text)
            if length > MAX_BODY:
                raise HttpError("Request body too large", 413)
            if len(self._buf) < start + length:
                return None
            body, stop = bytes(self._buf[start : start + length]), start + length
        del self._buf[:stop]
        path, _, query = target.partition("?")
        return Request(method.upper(), unquote(path), split_query(query), headers, body,
                       version, self.tls, query)

    def _chunked(self, pos: int) -> tuple[bytes, int] | None:
        body = bytearray()
        while True:
            eol = self._buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(bytes(self._buf[pos:eol]).split(b";")[0], 16)
            except ValueError as exc:
                raise HttpError("Bad chunk size", 400) from exc
            if len(body) + size > MAX_BODY:
                raise HttpError("Request body too large", 413)
            if size == 0:
                trailer_end = self._buf.find(b"\r\n\r\n", eol)
                if self._buf[eol : eol + 4] == b"\r\n\r\n":
                    return bytes(body), eol + 4
                return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
            if len(self._buf) < eol + 2 + size + 2:
                return None
            body += self._buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2


def render(answer: Answer, keep_alive: bool, *, head_only: bool = False) -> bytes:
    """The response's bytes; ``head_only`` (a HEAD request) leaves the body out."""
    try:
        phrase = HTTPStatus(answer.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {answer.status} {phrase}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        "Connection: " + ("keep-alive" if keep_alive else "close"),
        *(f"{name}: {value}" for name, value in answer.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + answer.body


Handler = Callable[[Request], Response]


class WebServer:
    """Serves a synchronous ``handler`` on ``host:port`` (port 0: any free port).

    Requests on one connection are answered in order; a handler that raises is answered with
    500 and logged as ``http_handler_failed``. Idle connections are closed after
    ``idle_timeout_s``; beyond ``max_connections`` new connections are closed at once."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *,
                 idle_timeout_s: float = 30.0, max_connections: int = 64) -> None:
        self.handler = handler
        self.host = host
        self._port = port
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    @property
    def port(self) -> int:
        """The bound port once listening, else the configured one."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        """Listen; an :class:`OSError` (port in use, bad address) propagates."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host,
                                                self._port, reuse_address=True)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections):
            conn.drop()
        await server.wait_closed()


class _Connection(asyncio.Protocol):
    def __init__(self, server: WebServer) -> None:
        self._server = server
        self._parser = RequestParser()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if len(self._server._connections) >= self._server.max_connections:
            transport.abort()
            return
        self._server._connections.add(self)
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def drop(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _touch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._server.idle_timeout_s,
                                                            self.drop)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        self._touch()
        while self._transport is not None and not self._transport.is_closing():
            try:
                req = self._parser.next_request()
            except HttpError as exc:
                self._send(Response(exc.status, f"{exc}\n".encode()), keep_alive=False)
                return
            if req is None:
                return
            try:
                answer = self._server.handler(req)
            except Exception as exc:  # one broken page must not take the server down
                log.error("http_handler_failed", path=req.path, error=repr(exc), exc_info=exc)
                answer = Response(500, b"Internal Server Error\n")
            self._send(answer, req.keep_alive, head_only=req.method == "HEAD")

    def _send(self, answer: Response, keep_alive: bool, head_only: bool = False) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(render(answer, keep_alive, head_only=head_only))
        if not keep_alive:
            self._transport.close()
