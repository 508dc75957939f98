"""One Modbus TCP endpoint for the units of several worker processes.

With ``gateway.workers`` above 1 each worker serves the units of its own meters on a loopback
port of its own (:mod:`gateway.modbus.server`), and the supervisor listens on ``modbus.port``
with a :class:`ModbusRelay`: every request is passed on, as it came, to the worker that polls
the meter of its unit id, and the worker's answer is passed back. A SCADA master sees one
server with every unit, as with a single process.

- Answers go back in the order of the requests on each client connection (a pipelining
  master gets them as from one server), whichever worker answers first.
- Per client connection, one loopback connection to each worker it addresses, opened at its
  first request and closed with it; transaction ids are passed through unchanged.
- A unit whose worker is not serving (it starts, restarts, or its connection broke) is
  answered with exception 0x0B (gateway target failed to respond), as an offline meter is.
- A unit id that no meter has gets no answer (``unknown_unit: exception``: 0x0B), as from the
  single server.
- A frame with a protocol id other than 0 or an impossible length closes the connection.

The relay parses only the MBAP header (7 bytes) and the function code; everything else is
the worker's to check.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog

from gateway.modbus.image import TARGET_FAILED
from gateway.modbus.listener import Listener

log = structlog.get_logger(__name__)

_MBAP: Final = struct.Struct(">HHHB")  # transaction, protocol, length, unit
MAX_PENDING: Final = 256  # answers a connection may owe before it is read no further


class Down:
    """The route of a unit whose worker is not serving now."""

    __slots__ = ()


DOWN: Final = Down()
Address = tuple[str, int]
Route = Callable[[int], Address | Down | None]  # unit id -> where, DOWN, or None: unknown


@dataclass(slots=True)
class RelayStats:
    """Counters for metrics: requests relayed and answered by the relay itself."""

    relayed: int = 0
    target_failed: int = 0  # answered 0x0B: the unit's worker is not serving
    unanswered: int = 0  # unknown unit ids left unanswered
    connections: int = 0  # open client connections
    accepted: int = 0
    refused: int = 0


class ModbusRelay(Listener["_Client"]):
    """Listens on ``host:port`` and relays each request by its unit id (``route``)."""

    def __init__(self, host: str, port: int, route: Route, *, answer_unknown: bool = False,
                 max_connections: int = 1000) -> None:
        super().__init__(host, port)
        self._clients = self.connections
        self.route = route
        self.answer_unknown = answer_unknown
        self.max_connections = max_connections
        self.stats = RelayStats()

    async def start(self) -> None:
        await self.listen(lambda: _Client(self), relay=True)

    async def close(self) -> None:
        port = self.port
        if await self.shut():
            log.info("modbus_stopped", port=port, relay=True)


@dataclass(slots=True)
class _Slot:
    """One request of a client connection, waiting for its answer (``b""``: none comes)."""

    tid: int
    unit: int
    fc: int
    reply: bytes | None = None

    def fail(self) -> None:
        self.reply = _frame(self.tid, self.unit, bytes(((self.fc | 0x80) & 0xFF, TARGET_FAILED)))


class _Client(asyncio.Protocol):
    """One master's connection: splits MBAP frames, relays them, answers in order."""

    def __init__(self, relay: ModbusRelay) -> None:
        self._relay = relay
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._pending: deque[_Slot] = deque()
        self._upstreams: dict[Address, _Upstream] = {}
        self._paused = False
        self._blocked = False
        self.peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        relay = self._relay
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if relay.stats.connections >= relay.max_connections:
            relay.stats.refused += 1
            log.warning("modbus_connection_refused", peer=self.peer, limit=relay.max_connections)
            transport.abort()
            return
        self._transport = transport
        relay.stats.connections += 1
        relay.stats.accepted += 1
        relay._clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self._relay._clients:
            self._relay._clients.discard(self)
            self._relay.stats.connections -= 1
        self._transport = None
        for upstream in list(self._upstreams.values()):
            upstream.close()
        self._upstreams.clear()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def pause_writing(self) -> None:  # the master does not read its answers: stop reading
        self._blocked = True
        self._flow()

    def resume_writing(self) -> None:
        self._blocked = False
        self._flow()

    def _flow(self) -> None:
        transport = self._transport
        if transport is None:
            return
        stop = self._blocked or len(self._pending) >= MAX_PENDING
        if stop and not self._paused:
            transport.pause_reading()
        elif not stop and self._paused:
            transport.resume_reading()
        self._paused = stop

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        relay, stats = self._relay, self._relay.stats
        while len(buf) >= 8:
            tid, protocol, length, unit = _MBAP.unpack_from(buf, 0)
            if protocol != 0 or not 2 <= length <= 254:
                log.info("modbus_frame_invalid", peer=self.peer, protocol=protocol,
                         length=length)
                buf.clear()
                self.close()
                return
            if len(buf) < 6 + length:
                break
            frame = bytes(buf[:6 + length])
            del buf[:6 + length]
            slot = _Slot(tid, unit, frame[7])
            route = relay.route(unit)
            if route is None:
                if not relay.answer_unknown:
                    stats.unanswered += 1
                    continue
                slot.fail()
            elif isinstance(route, Down):
                stats.target_failed += 1
                slot.fail()
            else:
                stats.relayed += 1
                self._upstream(route).send(frame, slot)
            self._pending.append(slot)
        self.flush()

    def _upstream(self, address: Address) -> _Upstream:
        upstream = self._upstreams.get(address)
        if upstream is None:
            upstream = self._upstreams[address] = _Upstream(self, address)
            self._relay.spawn(upstream.connect(), f"modbus-relay:{self.peer}->{address[1]}")
        return upstream

    @property
    def stats(self) -> RelayStats:
        return self._relay.stats

    def forget(self, upstream: _Upstream) -> None:
        if self._upstreams.get(upstream.address) is upstream:
            del self._upstreams[upstream.address]

    def flush(self) -> None:
        """Write the answers that are due, in request order."""
        pending = self._pending
        out = []
        while pending and pending[0].reply is not None:
            reply = pending.popleft().reply
            if reply:
                out.append(reply)
        if out and self._transport is not None:
            self._transport.write(b"".join(out))
        self._flow()


class _Upstream(asyncio.Protocol):
    """The loopback connection of one client connection to one worker's server."""

    def __init__(self, client: _Client, address: Address) -> None:
        self._client = client
        self.address = address
        self._transport: asyncio.Transport | None = None
        self._queued: list[bytes] = []  # frames written before the connection was made
        self._waiting: deque[_Slot] = deque()
        self._buf = bytearray()
        self._closed = False

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: self, *self.address)
        except OSError as exc:
            log.info("modbus_relay_unreachable", port=self.address[1], error=exc.strerror or
                     str(exc))
            self._fail_all()

    def send(self, frame: bytes, slot: _Slot) -> None:
        if self._closed:
            slot.fail()
            return
        self._waiting.append(slot)
        if self._transport is None:
            self._queued.append(frame)
        else:
            self._transport.write(frame)

    def close(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._closed:  # the client left while this connected
            transport.close()
            return
        self._transport = transport
        if self._queued:
            transport.write(b"".join(self._queued))
            self._queued.clear()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        waiting = self._waiting
        while len(buf) >= 8:
            tid, _protocol, length, _unit = _MBAP.unpack_from(buf, 0)
            if len(buf) < 6 + length:
                break
            frame = bytes(buf[:6 + length])
            del buf[:6 + length]
            while waiting:  # a request the worker did not answer gets no answer either
                slot = waiting.popleft()
                if slot.tid == tid:
                    slot.reply = frame
                    break
                slot.reply = b""
        self._client.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail_all()

    def _fail_all(self) -> None:
        """The worker went away: what it still owed is answered 0x0B."""
        self._closed = True
        stats = self._client.stats
        while self._waiting:
            self._waiting.popleft().fail()
            stats.target_failed += 1
        self._client.forget(self)
        self._client.flush()


def _frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return _MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu
