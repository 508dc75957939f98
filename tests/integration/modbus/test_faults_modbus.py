"""A Modbus client flood against the gateway's Modbus server: hundreds of idle connections,
half-open frames that never complete, garbage, frames cut off by a reset, and a client that
pipelines thousands of requests without reading the answers -- all from another thread, while
a well-behaved pymodbus client keeps reading and must get every answer, correct."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import ModbusConfig
from gateway.modbus import ModbusOutput
from gateway.modbus.server import ModbusServer
from gateway.model import Availability
from gateway.simulator import SimMeter
from tests.support.modbus import T0, TS, address_of, meter_config, reading_at
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

IDLE, HALF_OPEN, GARBAGE, CUT_OFF = 300, 150, 100, 100
PIPELINED = 5000


def mbap(tid: int, length: int, unit: int = 1) -> bytes:
    return struct.pack(">HHHB", tid, 0, length, unit)


def read_request(tid: int, address: int = 0, count: int = 2) -> bytes:
    return mbap(tid, 6) + struct.pack(">BHH", 4, address, count)


class Flood:
    """Opens the bad clients from its own thread; ``closed_by_server`` counts the garbage
    connections the server hung up on."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ready = threading.Event()
        self.release = threading.Event()
        self.closed_by_server = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modbus-flood", daemon=True)

    def _connect(self, stack: ExitStack) -> socket.socket:
        s = stack.enter_context(socket.create_connection(("127.0.0.1", self.port), timeout=10))
        return s

    def _run(self) -> None:
        try:
            with ExitStack() as stack:
                for _ in range(IDLE):
                    self._connect(stack)
                for i in range(HALF_OPEN):  # a header promising 20 bytes; 3 of them sent
                    self._connect(stack).sendall(mbap(i, 20) + b"\x04\x00")
                for i in range(GARBAGE):  # protocol id 0xFFFF and noise
                    s = self._connect(stack)
                    s.sendall(struct.pack(">HH", i, 0xFFFF) + bytes(range(60)))
                    if s.recv(1024) == b"":
                        self.closed_by_server += 1
                for i in range(CUT_OFF):  # half a request, then a reset
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                    s.sendall(read_request(i)[:9])
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                firehose = self._connect(stack)  # never reads a single answer
                firehose.settimeout(0.5)
                with contextlib.suppress(TimeoutError):  # the server stopped reading it
                    firehose.sendall(b"".join(read_request(i & 0xFFFF)
                                              for i in range(PIPELINED)))
                self.ready.set()
                self.release.wait(60)
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    @contextmanager
    def running(self) -> Iterator[Flood]:
        self._thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self._thread.join(30)


def fed_output(tmp_path: Path) -> tuple[ModbusOutput, SimMeter]:
    """A Modbus output for meter ``main`` (unit 1), online, with one reading of ``sim``.

    The flood comes from one address and its half-open frames are meant to stay open while
    it runs: the per-address cap and the frame deadline are lifted here (their own tests are
    in test_abuse_modbus.py)."""
    config = ModbusConfig(host="127.0.0.1", port=0, max_connections_per_address=1000,
                          frame_timeout_s=600)
    out = ModbusOutput(config, [meter_config()], tmp_path / "state", clock=lambda: T0)
    sim = SimMeter(serial="SIM0042", clock=lambda: T0)
    out.on_availability(Availability("main", True, T0))
    out.on_reading(reading_at(sim, TS))
    return out, sim


async def test_the_server_keeps_answering_a_good_client_through_a_flood(
        tmp_path: Path) -> None:
    output, sim = fed_output(tmp_path)
    await output.start()
    grid = address_of(sim, "Grid")
    expected = pytest.approx(sim.rate("Grid", TS), rel=1e-6)
    good = AsyncModbusTcpClient("127.0.0.1", port=output.port, timeout=3, retries=0)
    assert await good.connect()
    answers: list[float] = []
    flood = Flood(output.port)
    try:
        with flood.running():
            while not flood.ready.is_set():  # read while the flood builds up
                rr = await good.read_input_registers(grid, count=2, device_id=1)
                answers.append(good.convert_from_registers(rr.registers, good.DATATYPE.FLOAT32))
            assert flood.error is None, flood.error
            for _ in range(100):  # and while all of it is connected
                rr = await good.read_input_registers(grid, count=2, device_id=1)
                answers.append(good.convert_from_registers(rr.registers, good.DATATYPE.FLOAT32))
            stats = output.stats
            assert stats.connections >= IDLE + HALF_OPEN + 1
            assert stats.refused == 0
        assert flood.closed_by_server == GARBAGE
        await async_wait_until(lambda: output.stats.connections == 1, timeout=15,
                               what="every flood connection gone")
        rr = await good.read_input_registers(grid, count=2, device_id=1)
        answers.append(good.convert_from_registers(rr.registers, good.DATATYPE.FLOAT32))
    finally:
        good.close()
        await output.close()
    assert len(answers) > 100
    assert all(a == expected for a in answers)


async def test_a_connection_over_the_limit_is_refused_and_the_rest_still_served(
        tmp_path: Path) -> None:
    images, sim = fed_output(tmp_path)  # not started: only its images are served
    server = ModbusServer("127.0.0.1", 0, images.image, max_connections=5)
    await server.start()
    try:
        streams = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]
        await async_wait_until(lambda: server.stats.connections == 5, what="five connections")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # refused: closed at once
        writer.close()
        first_reader, first_writer = streams[0]
        first_writer.write(read_request(7, address_of(sim, "Grid")))
        head = await asyncio.wait_for(first_reader.readexactly(7), 5)
        assert struct.unpack(">HHHB", head)[0] == 7  # the admitted clients are still served
        assert server.stats.refused == 1
        for _, w in streams:
            w.close()
    finally:
        await server.close()
