"""The Modbus relay of a gateway with workers: one endpoint in front of two Modbus outputs (as
two workers run them), over real sockets. Reads through it equal reads of the output behind
it; pipelined requests to units of both come back in request order; a unit whose worker is
not serving answers 0x0B, an unknown unit gets no answer (or 0x0B when asked for)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import ModbusConfig
from gateway.modbus import DOWN, ModbusOutput, ModbusRelay
from gateway.modbus.relay import Address, Down
from gateway.simulator import SimMeter
from tests.support.modbus import T0, TS, meter_config, reading_at

UNITS = (1, 2)  # unit 1 on worker "a", unit 2 on worker "b"


def frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    head = await asyncio.wait_for(reader.readexactly(7), 5)
    tid, _, length, unit = struct.unpack(">HHHB", head)
    return tid, unit, await asyncio.wait_for(reader.readexactly(length - 1), 5)


class Workers:
    """Two Modbus outputs, one meter each, and the routing table a supervisor keeps."""

    def __init__(self, tmp_path: Path) -> None:
        self.outputs = {
            unit: ModbusOutput(ModbusConfig(host="127.0.0.1", port=0),
                               [meter_config(f"m{unit}", unit)], tmp_path / f"state-{unit}",
                               clock=lambda: T0)
            for unit in UNITS}
        self.down: set[int] = set()

    async def start(self) -> None:
        for unit, out in self.outputs.items():
            await out.start()
            sim = SimMeter(serial=f"SIM00{unit}", clock=lambda: T0, phase=unit)
            out.on_reading(reading_at(sim, TS, f"m{unit}"))

    def route(self, unit: int) -> Address | Down | None:
        if unit not in self.outputs:
            return None
        if unit in self.down:
            return DOWN
        return ("127.0.0.1", self.outputs[unit].port)


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(tmp_path)
    await w.start()
    yield w
    for out in w.outputs.values():
        await out.close()


@pytest.fixture
async def relay(workers: Workers) -> AsyncIterator[ModbusRelay]:
    r = ModbusRelay("127.0.0.1", 0, workers.route)
    await r.start()
    yield r
    await r.close()


async def test_reads_through_the_relay_equal_reads_of_each_worker(
        workers: Workers, relay: ModbusRelay) -> None:
    async with AsyncModbusTcpClient("127.0.0.1", port=relay.port, timeout=3, retries=0) as via:
        for unit in UNITS:
            async with AsyncModbusTcpClient("127.0.0.1", port=workers.outputs[unit].port,
                                            timeout=3, retries=0) as direct:
                for address, count in ((0, 8), (100, 66)):
                    got = await via.read_input_registers(address, count=count, device_id=unit)
                    want = await direct.read_input_registers(address, count=count,
                                                             device_id=unit)
                    assert not got.isError(), got
                    assert got.registers == want.registers
        a = await via.read_input_registers(100, count=2, device_id=1)
        b = await via.read_input_registers(100, count=2, device_id=2)
        assert a.registers != b.registers, "each unit read from its own worker"
    assert relay.stats.relayed >= 6


async def test_pipelined_requests_to_both_workers_come_back_in_request_order(
        relay: ModbusRelay) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    try:
        requests = [(tid, UNITS[tid % 2]) for tid in range(1, 41)]
        writer.write(b"".join(frame(tid, unit, struct.pack(">BHH", 4, 0, 8))
                              for tid, unit in requests))
        answers = [await read_frame(reader) for _ in requests]
    finally:
        writer.close()
    assert [(tid, unit) for tid, unit, _ in answers] == requests
    assert all(pdu[:2] == bytes((4, 16)) for _, _, pdu in answers)


async def test_a_worker_that_is_not_serving_answers_0x0b_and_unknown_units_get_nothing(
        workers: Workers, relay: ModbusRelay) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    read = struct.pack(">BHH", 3, 0, 8)
    try:
        workers.down.add(2)
        writer.write(frame(1, 2, read) + frame(2, 99, read) + frame(3, 1, read))
        assert await read_frame(reader) == (1, 2, bytes((0x83, 0x0B)))
        tid, unit, pdu = await read_frame(reader)  # unit 99 got no answer: next is tid 3
        assert (tid, unit, pdu[:2]) == (3, 1, bytes((3, 16)))

        # the worker's server goes away under an open relayed connection
        workers.down.clear()
        writer.write(frame(4, 2, read))
        assert (await read_frame(reader))[:2] == (4, 2)
        await workers.outputs[2].close()
        writer.write(frame(5, 2, read))
        assert await read_frame(reader) == (5, 2, bytes((0x83, 0x0B)))
        writer.write(frame(6, 1, read))
        assert (await read_frame(reader))[:2] == (6, 1)
    finally:
        writer.close()
    assert relay.stats.unanswered == 1
    assert relay.stats.target_failed == 2


async def test_unknown_units_answer_0x0b_when_configured(workers: Workers) -> None:
    relay = ModbusRelay("127.0.0.1", 0, workers.route, answer_unknown=True)
    await relay.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(frame(7, 99, struct.pack(">BHH", 4, 0, 1)))
        assert await read_frame(reader) == (7, 99, bytes((0x84, 0x0B)))
        writer.close()
    finally:
        await relay.close()


async def test_a_malformed_frame_closes_the_connection(relay: ModbusRelay) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(struct.pack(">HHHB", 1, 7, 6, 1) + bytes(5))  # protocol id 7
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
