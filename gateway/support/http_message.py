"""What an HTTP request and response are to a handler, independent of the wire.

:class:`Request` is built by :mod:`gateway.support.http_protocol` from what h11 parsed;
anything with the shape of :class:`Answer` (a :class:`Response`, the simulator's ``Reply``)
can be sent back.
Query strings are split on ``&`` and percent-decoded with ``+`` kept literally, as the eGauge
WebAPI's ``reg=3+5`` needs (``application/x-www-form-urlencoded`` would turn it into a space).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class Request:
    """One complete request: ``path`` percent-decoded, ``query`` as (name, value) pairs in
    order, ``headers`` with lower-case names (repeated fields joined with ``", "``)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    version: str = "HTTP/1.1"
    tls: bool = False
    raw_query: str = ""
    keep_alive: bool = True  # False: the connection closes after the answer (HTTP/1.0, close)


class Answer(Protocol):
    """Anything the server can put on the wire."""

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
    """A plain HTTP response (``Content-Length`` is added on the wire)."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Answer]


def split_query(text: str) -> tuple[tuple[str, str], ...]:
    """``a=1&b=3+5&c`` -> ``(("a", "1"), ("b", "3+5"), ("c", ""))``."""
    pairs = []
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return tuple(pairs)


def request_from(method: bytes, target: bytes, version: bytes,
                 fields: list[tuple[bytes, bytes]], body: bytes, *, tls: bool,
                 keep_alive: bool) -> Request:
    """A :class:`Request` from the parts h11 validated (lower-case field names)."""
    headers: dict[str, str] = {}
    for name, value in fields:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    path, _, query = target.decode("latin-1").partition("?")
    return Request(method.decode("latin-1").upper(), unquote(path), split_query(query),
                   headers, body, "HTTP/" + version.decode("latin-1"), tls, query, keep_alive)


def reason_phrase(status: int) -> bytes:
    """``b"Not Found"`` for 404; empty for a status HTTP does not name."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
