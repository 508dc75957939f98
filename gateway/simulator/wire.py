"""HTTP/1.1 on the wire: request parsing (Content-Length or chunked bodies, keep-alive)
and response rendering. Query strings are split on ``&`` and percent-decoded, with ``+``
kept literally, as the WebAPI's ``reg=3+5`` needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

from gateway.simulator.reply import QueryError, Reply

MAX_HEAD = 16 * 1024
MAX_BODY = 4 * 1024 * 1024


class HttpError(QueryError):
    """The bytes are not an HTTP request we can answer; close after answering ``status``."""


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


def render(reply: Reply, keep_alive: bool) -> bytes:
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [
        f"HTTP/1.1 {reply.status} {phrase}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        "Connection: " + ("keep-alive" if keep_alive else "close"),
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body
