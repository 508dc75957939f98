"""A small HTTP/1.1 client on h11 for loopback peers: the supervisor reads its workers'
``/readyz``, ``/metrics`` and status pages with it (:mod:`gateway.runtime.supervisor`).

One connection per request (``Connection: close``), a deadline for the whole exchange and a
limit on the body. Anything that is not a complete HTTP answer in time -- refused, reset,
malformed, too large, too slow -- is an :class:`~gateway.errors.UpstreamError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import h11

from gateway.errors import UpstreamError

MAX_BODY = 64 * 1024 * 1024  # /metrics of a few thousand meters fits many times over
_READ = 65536


@dataclass(frozen=True, slots=True)
class Fetched:
    """One answer: its status, headers (lower-case names) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.headers if k == name), default)


async def fetch(host: str, port: int, target: str, *, timeout_s: float = 5.0,
                max_body: int = MAX_BODY) -> Fetched:
    """``GET target`` from ``host:port``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(host, port, target, max_body)
    except TimeoutError as exc:
        raise UpstreamError(f"{host}:{port}{target}: no answer within {timeout_s:g} s") from exc
    except (OSError, h11.ProtocolError) as exc:
        raise UpstreamError(f"{host}:{port}{target}: {exc}") from exc


async def _exchange(host: str, port: int, target: str, max_body: int) -> Fetched:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        request = h11.Request(method="GET", target=target,
                              headers=[("Host", f"{host}:{port}"), ("Connection", "close")])
        writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
        status, body = 0, bytearray()
        headers: tuple[tuple[str, str], ...] = ()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(_READ)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = tuple((k.decode("latin-1"), v.decode("latin-1"))
                                for k, v in event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_body:
                    raise UpstreamError(f"{host}:{port}{target}: body over {max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return Fetched(status, headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                raise UpstreamError(f"{host}:{port}{target}: closed before the answer ended")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
