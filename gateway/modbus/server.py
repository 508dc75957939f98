"""A Modbus TCP server that answers from the unit images and never waits for a meter.

It is a plain ``asyncio.Protocol``: each request is parsed from the MBAP header and answered
synchronously in ``data_received`` from memory, in order, so pipelined requests, partial frames
and many connections need no tasks at all. Function codes 3 and 4 read the same image; every
other function code goes to the write handler when there is one (``modbus.writes``, see
:mod:`gateway.modbus.writes`), else it is answered with exception 0x01. A write that has to wait
for a meter is answered from a task the server owns; the connection holds back its later
requests until then, so answers stay in order, and other connections are not held up.
Exceptions of reads:

- 0x01 illegal function: anything but FC03/FC04 without a write handler;
- 0x02 illegal data address: a register of the range is outside the unit's map;
- 0x03 illegal data value: a count of 0 or above 125, or a malformed request;
- 0x0B gateway target failed to respond: the unit's meter is offline (status points excepted),
  and, with ``unknown_unit: exception``, a unit id no meter has (``ignore``: no answer).

A frame with a protocol id other than 0 or an impossible length closes the connection, and so
does a frame not complete within ``frame_timeout_s`` of its first byte. Who may connect and
who makes room at the connection limit: :mod:`gateway.modbus.admission`. Events a client can
trigger at will (bad frames, refused connections, ...) are counted in :class:`ServerStats`
and logged at most once per ``log_interval_s`` each, with the count
(:class:`~gateway.support.LogThrottle`).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from gateway.modbus.admission import Admission, client_address
from gateway.modbus.image import TARGET_FAILED, UnitImage
from gateway.modbus.listener import Listener
from gateway.support import LogThrottle

log = structlog.get_logger(__name__)

ILLEGAL_FUNCTION: Final = 0x01
ILLEGAL_VALUE: Final = 0x03
SERVER_FAILURE: Final = 0x04
MAX_READ: Final = 125
MAX_CONNECTIONS: Final = 1000
_MBAP: Final = struct.Struct(">HHHB")  # transaction, protocol, length, unit
_READ: Final = struct.Struct(">HH")

Lookup = Callable[[int], UnitImage | None]
Outcome = bytes | int  # a response PDU, or an exception code
Deferred = Coroutine[Any, Any, bytes]  # a response PDU that has to wait for a meter
WriteHandler = Callable[[int, bytes, str], Outcome | Awaitable[Outcome]]  # unit, PDU, peer


@dataclass
class ServerStats:
    """Counters for metrics: requests answered, exceptions by code, connections, and what
    the server cut off."""

    requests: int = 0
    unanswered: int = 0  # requests for unknown units that got no reply
    exceptions: Counter[int] = field(default_factory=Counter)
    functions: Counter[int] = field(default_factory=Counter)  # answered, by function code
    function_exceptions: Counter[tuple[int, int]] = field(default_factory=Counter)  # (fc, code)
    connections: int = 0  # open now
    accepted: int = 0
    refused: int = 0
    evicted: int = 0  # idle or trickling clients dropped at the connection limit
    refused_per_address: int = 0  # connections over max_connections_per_address
    denied: int = 0  # connections from outside allow_from
    frame_timeouts: int = 0  # connections closed for a frame not completed in time
    frames_invalid: int = 0  # connections closed for a bad protocol id or length


class ModbusServer(Listener["_Connection"]):
    """Listens on ``host:port`` (port 0: any free port, see :attr:`port`)."""

    def __init__(self, host: str, port: int, lookup: Lookup, *, answer_unknown: bool = False,
                 max_connections: int = MAX_CONNECTIONS, writes: WriteHandler | None = None,
                 idle_evict_s: float = 30.0, per_address: int = MAX_CONNECTIONS,
                 frame_timeout_s: float = 5.0, allow_from: Sequence[str] | None = None,
                 log_interval_s: float = 60.0) -> None:
        """``per_address``: connections one client address may hold; ``frame_timeout_s``:
        the time a frame may take from its first byte to its last; ``allow_from``: the
        client networks (``None``: everyone); ``log_interval_s``: at most one line per
        event and interval for what clients can trigger at will."""
        super().__init__(host, port)
        self._connections = self.connections
        self.lookup = lookup
        self.answer_unknown = answer_unknown
        self.max_connections = max_connections
        self.frame_timeout_s = frame_timeout_s
        self.admission = Admission(per_address=per_address, idle_evict_s=idle_evict_s,
                                   allow_from=allow_from)
        self.notes = LogThrottle(log, log_interval_s)
        self.stats = ServerStats()
        self.writes = writes

    async def start(self) -> None:
        await self.listen(lambda: _Connection(self))

    async def close(self) -> None:
        port = self.port
        if await self.shut():
            self.notes.flush()
            log.info("modbus_stopped", port=port)

    @property
    def idle_evict_s(self) -> float:
        return self.admission.idle_evict_s

    def admit(self, conn: _Connection) -> bool:
        """Whether a new connection may stay (see :mod:`gateway.modbus.admission`); at the
        limit an incomplete-frame or silent client may be dropped to make room."""
        stats, admission, address = self.stats, self.admission, conn.address
        if not admission.allowed(address):
            stats.denied += 1
            self.notes.emit("warning", "modbus_connection_denied", peer=conn.peer)
            return False
        if admission.at_cap(address):
            stats.refused_per_address += 1
            self.notes.emit("warning", "modbus_connection_refused_per_address", peer=conn.peer,
                            limit=admission.per_address)
            return False
        if stats.connections >= self.max_connections:
            chosen = admission.victim(self._connections, time.monotonic())
            if chosen is not None:
                chosen[0].evict(chosen[1])
        if stats.connections >= self.max_connections:
            stats.refused += 1
            self.notes.emit("warning", "modbus_connection_refused", peer=conn.peer,
                            limit=self.max_connections)
            return False
        stats.connections += 1
        stats.accepted += 1
        self._connections.add(conn)
        admission.opened(address)
        return True

    def release(self, conn: _Connection) -> bool:
        """Forget a connection that closed or is being dropped; False if it was not open."""
        if conn not in self._connections:
            return False
        self._connections.discard(conn)
        self.stats.connections -= 1
        self.admission.closed(conn.address)
        return True

    def handle(self, unit_id: int, pdu: bytes, peer: str = "") -> bytes | Deferred | None:
        """The response PDU for one request PDU (``None``: no answer; a coroutine: a write
        whose answer comes when the meter's has)."""
        stats = self.stats
        fc = pdu[0]
        unit = self.lookup(unit_id)
        if unit is None:
            if not self.answer_unknown:
                stats.unanswered += 1
                return None
            return self._exception(fc, TARGET_FAILED)
        if fc not in (3, 4):
            if self.writes is None:
                return self._exception(fc, ILLEGAL_FUNCTION)
            outcome = self.writes(unit_id, pdu, peer)
            if isinstance(outcome, bytes | int):
                return self._outcome(fc, outcome)
            return self._later(fc, outcome)
        if len(pdu) != 5:
            return self._exception(fc, ILLEGAL_VALUE)
        address, count = _READ.unpack_from(pdu, 1)
        if not 1 <= count <= MAX_READ:
            return self._exception(fc, ILLEGAL_VALUE)
        result = unit.read(address, count)
        if isinstance(result, int):
            return self._exception(fc, result)
        stats.requests += 1
        stats.functions[fc] += 1
        return bytes((fc, 2 * count)) + result

    def _outcome(self, fc: int, outcome: Outcome) -> bytes:
        if isinstance(outcome, int):
            return self._exception(fc, outcome)
        self.stats.requests += 1
        self.stats.functions[fc] += 1
        return outcome

    async def _later(self, fc: int, pending: Awaitable[Outcome]) -> bytes:
        try:
            outcome = await pending
        except Exception:  # a bug: answer "server device failure" rather than nothing
            log.exception("modbus_write_failed", function=fc)
            outcome = SERVER_FAILURE
        return self._outcome(fc, outcome)

    def _exception(self, fc: int, code: int) -> bytes:
        self.stats.requests += 1
        self.stats.exceptions[code] += 1
        self.stats.functions[fc] += 1
        self.stats.function_exceptions[(fc, code)] += 1
        return bytes(((fc | 0x80) & 0xFF, code))


class _Connection(asyncio.Protocol):
    """One client: reassembles MBAP frames and writes the answers in request order."""

    def __init__(self, server: ModbusServer) -> None:
        self._server = server
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self.address = ""  # the client's IP address
        self.peer = ""  # ip:port, for logs and writes
        self._waiting = False  # a write of this connection waits for its meter
        self.last_active = time.monotonic()  # the last request answered (or the connect)
        self.incomplete_since: float | None = None  # the first byte of an incomplete frame
        self._deadline: asyncio.TimerHandle | None = None
        self._blocked = False  # the client does not read its answers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.address, self.peer = client_address(transport.get_extra_info("peername"))
        if not self._server.admit(self):
            transport.abort()
            return
        log.debug("modbus_client_connected", peer=self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._server.release(self):
            log.debug("modbus_client_disconnected", peer=self.peer,
                      error=str(exc) if exc else None)
        self._stop_deadline()
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def evict(self, reason: str) -> None:
        """Drop this connection at once to make room for a new client."""
        server = self._server
        if server.release(self):
            server.stats.evicted += 1
            server.notes.emit("info", "modbus_idle_client_evicted", peer=self.peer,
                              reason=reason,
                              idle_s=round(time.monotonic() - self.last_active, 1))
        self._stop_deadline()
        if self._transport is not None:
            self._transport.abort()

    @property
    def idle(self) -> bool:
        return not self._waiting

    def pause_writing(self) -> None:  # the client does not read its answers: stop reading too
        self._blocked = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._blocked = False
        if self._transport is not None and not self._waiting:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._answer()

    def _answer(self) -> None:
        """Answer the complete requests buffered, up to a write that has to wait."""
        buf = self._buf
        handle = self._server.handle
        replies: list[bytes] = []
        consumed = answered = False
        while len(buf) >= 8 and not self._waiting:
            tid, protocol, length, unit_id = _MBAP.unpack_from(buf, 0)
            if protocol != 0 or not 2 <= length <= 254:
                self._server.stats.frames_invalid += 1
                self._server.notes.emit("info", "modbus_frame_invalid", peer=self.peer,
                                        protocol=protocol, length=length)
                buf.clear()
                self._stop_deadline()
                if self._transport is not None and replies:  # the frames before it
                    self._transport.write(b"".join(replies))
                self.close()
                return
            if len(buf) < 6 + length:
                break
            pdu = bytes(buf[7:6 + length])
            del buf[:6 + length]
            consumed = True
            reply = handle(unit_id, pdu, self.peer)
            if isinstance(reply, bytes):
                replies.append(_frame(tid, unit_id, reply))
                answered = True
            elif reply is not None:
                answered = True
                self._waiting = True
                self._server.spawn(self._deferred(tid, unit_id, reply),
                                   name=f"modbus-write:{self.peer}:{tid}")
        if answered:
            self.last_active = time.monotonic()
        self._track_incomplete(consumed)
        if self._transport is None:
            return
        if replies:
            self._transport.write(b"".join(replies))
        if self._waiting:
            self._transport.pause_reading()  # later requests wait in the socket

    def _track_incomplete(self, consumed: bool) -> None:
        """Start the frame deadline when an incomplete frame begins; stop it when none is
        left. Bytes that continue the same frame do not move it."""
        if not self._buf:
            self.incomplete_since = None
            self._stop_deadline()
        elif consumed or self.incomplete_since is None:
            self.incomplete_since = time.monotonic()
            self._arm_deadline()

    def _arm_deadline(self) -> None:
        self._stop_deadline()
        if self._transport is not None:
            self._deadline = asyncio.get_running_loop().call_later(
                self._server.frame_timeout_s, self._frame_expired)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _frame_expired(self) -> None:
        self._deadline = None
        if self._transport is None or not self._buf:
            return
        if self._waiting or self._blocked:  # the server holds the frame back, not the client
            self._arm_deadline()
            return
        server = self._server
        server.stats.frame_timeouts += 1
        server.notes.emit("info", "modbus_frame_timeout", peer=self.peer,
                          buffered=len(self._buf), timeout_s=server.frame_timeout_s)
        self._buf.clear()
        self._transport.abort()

    async def _deferred(self, tid: int, unit_id: int, reply: Deferred) -> None:
        try:
            pdu = await reply
        finally:
            self._waiting = False
        if self._transport is None:  # the client has gone; the write was still made
            return
        self._transport.write(_frame(tid, unit_id, pdu))
        if not self._blocked:
            self._transport.resume_reading()
        self._answer()


def _frame(tid: int, unit_id: int, pdu: bytes) -> bytes:
    return _MBAP.pack(tid, 0, len(pdu) + 1, unit_id) + pdu
