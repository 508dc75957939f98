"""The Modbus TCP output over real sockets: pymodbus's client (and raw MBAP frames where a
client library refuses to send a bad request) against :class:`ModbusOutput`.

Values are fed as the poller would, from the simulator's deterministic functions
(``SimMeter.rate/raw/cumulative``); expected values come from those functions and the
definitions in docs/MODBUS.md, decoded by pymodbus or by ``struct`` here.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import EnergyConfig, ModbusConfig
from gateway.modbus import ModbusOutput
from gateway.modbus.server import ModbusServer
from gateway.model import Availability, Identity, Reading, RegisterInfo, RegisterValue
from gateway.simulator import SimMeter, Wave
from tests.support.modbus import T0, TS, address_of, meter_config, reading_at
from tests.support.waiting import async_wait_until

FMT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
       "float32": "f", "float64": "d"}
SIZE = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4,
        "float32": 2, "float64": 4}
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
# (type, source, register, scale): signed types carry Grid (it runs negative), unsigned Solar+
CASES = [
    ("float32", "rate", "Grid", 1.0), ("float64", "rate", "Grid", 1.0),
    ("int16", "rate", "Grid", 1.0), ("uint16", "rate", "Solar+", 1.0),
    ("int32", "rate", "Grid", 0.001), ("uint32", "rate", "Solar+", 0.001),
    ("int64", "raw", "Grid", 1.0), ("uint64", "raw", "Solar+", 1.0),
    ("float64", "cumulative", "Grid", 1.0),
]


ENERGY_CODES = ("P", "S", "var", "PQ")  # reported in kWh, kVAh, kvarh


def kwh(sim: SimMeter, name: str, t: float) -> float:
    """A power register's energy in kWh: the meter's W·s divided by 3.6e6."""
    return sim.cumulative(name, t) / 3_600_000


def decode(registers: list[int], type_: str, order: str) -> float:
    """Undo the word order as docs/MODBUS.md defines it, then read big-endian."""
    words = [struct.pack(">H", r) for r in registers]
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    value: float = struct.unpack(">" + FMT[type_], b"".join(words))[0]
    return value


def frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    head = await asyncio.wait_for(reader.readexactly(7), 5)
    tid, _, length, unit = struct.unpack(">HHHB", head)
    return tid, unit, await asyncio.wait_for(reader.readexactly(length - 1), 5)


@pytest.fixture
def sim() -> SimMeter:
    return SimMeter(serial="SIM0042", clock=lambda: T0)


@pytest.fixture
async def output(tmp_path: Path) -> AsyncIterator[ModbusOutput]:
    out = ModbusOutput(ModbusConfig(host="127.0.0.1", port=0), [meter_config()],
                       tmp_path / "state", clock=lambda: T0)
    await out.start()
    yield out
    await out.close()


@pytest.fixture
async def client(output: ModbusOutput) -> AsyncIterator[AsyncModbusTcpClient]:
    c = AsyncModbusTcpClient("127.0.0.1", port=output.port, timeout=3, retries=0)
    assert await c.connect()
    yield c
    c.close()


async def start_output(tmp_path: Path, text: str, **kw: object) -> ModbusOutput:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    out = ModbusOutput(ModbusConfig(host="127.0.0.1", port=0, **kw),  # type: ignore[arg-type]
                       [meter_config(mapping=str(path))], tmp_path / "state", clock=lambda: T0)
    await out.start()
    return out


async def test_every_type_and_word_order_reads_back(tmp_path: Path, sim: SimMeter) -> None:
    lines, address, points = ["registers:"], 1000, []
    for order in ORDERS:
        for type_, source, register, scale in CASES:
            lines.append(f"  - {{address: {address}, name: {register!r}, source: {source},"
                         f" type: {type_}, scale: {scale}, word_order: {order}}}")
            points.append((address, type_, source, register, scale, order))
            address += SIZE[type_]
    for order in ("ABCD", "BADC"):
        lines.append(f"  - {{address: {address}, source: 'identity:serial', type: string,"
                     f" length: 5, word_order: {order}}}")
        address += 5
    out = await start_output(tmp_path, "\n".join(lines) + "\n")
    c = AsyncModbusTcpClient("127.0.0.1", port=out.port, timeout=3, retries=0)
    try:
        assert await c.connect()
        out.on_identity("main", Identity("SIM0042", "EG4115", "4.6.2"))
        out.on_reading(reading_at(sim, TS))
        for addr, type_, source, register, scale, order in points:
            rr = await c.read_holding_registers(addr, count=SIZE[type_], device_id=1)
            assert not rr.isError(), (addr, rr)
            got = decode(rr.registers, type_, order)
            if source == "raw":
                assert got == sim.raw(register, TS)
            elif source == "cumulative":
                assert got == kwh(sim, register, TS)
            elif type_ == "float32":
                assert got == struct.unpack(">f", struct.pack(">f", sim.rate(register, TS)))[0]
            elif type_ == "float64":
                assert got == sim.rate(register, TS)
            else:
                assert got == round(sim.rate(register, TS) / scale), (type_, order)
            if order in ("ABCD", "CDAB"):  # pymodbus's own decoder agrees (big/little words)
                dtype = getattr(c.DATATYPE, type_.upper())
                word_order = "big" if order == "ABCD" else "little"
                assert c.convert_from_registers(rr.registers, dtype, word_order=word_order) == got
        rr = await c.read_holding_registers(address - 10, count=10, device_id=1)
        data = b"".join(struct.pack(">H", r) for r in rr.registers)
        # "SI M0 04 2\0 \0\0", then the same with the bytes of each register swapped
        assert data == b"SIM0042\0\0\0" + b"IS0M40\x002\0\0"
    finally:
        c.close()
        await out.close()


async def test_default_map_serves_status_and_every_register(
        output: ModbusOutput, client: AsyncModbusTcpClient, sim: SimMeter) -> None:
    output.on_reading(reading_at(sim, TS))
    rr = await client.read_holding_registers(0, count=8, device_id=1)
    online, age, ts_s, ts_us, failed = struct.unpack(
        ">HHIII", b"".join(struct.pack(">H", r) for r in rr.registers))
    assert (online, age, failed) == (1, 0, 0)  # 0.75 s old: 0 whole seconds
    assert (ts_s, ts_us) == (int(TS), 250_000)
    for reg in sim.registers:
        rr = await client.read_holding_registers(address_of(sim, reg.name), count=6, device_id=1)
        rate = client.convert_from_registers(rr.registers[:2], client.DATATYPE.FLOAT32)
        cumulative = client.convert_from_registers(rr.registers[2:], client.DATATYPE.FLOAT64)
        assert rate == pytest.approx(sim.rate(reg.name, TS), rel=1e-6)
        expected = (kwh(sim, reg.name, TS) if reg.type_code in ENERGY_CODES
                    else sim.cumulative(reg.name, TS))  # unit·s for the others
        assert cumulative == pytest.approx(expected, rel=1e-12), reg.name


async def test_fc03_and_fc04_read_the_same_image(
        output: ModbusOutput, client: AsyncModbusTcpClient, sim: SimMeter) -> None:
    output.on_reading(reading_at(sim, TS))
    end = address_of(sim, sim.registers[-1].name) + 6
    for start, count in ((0, 8), (100, end - 100), (end - 40, 40)):
        holding = await client.read_holding_registers(start, count=count, device_id=1)
        inputs = await client.read_input_registers(start, count=count, device_id=1)
        assert not holding.isError()
        assert holding.registers == inputs.registers
        assert len(inputs.registers) == count


async def test_status_follows_the_meter_going_down_and_up(
        output: ModbusOutput, client: AsyncModbusTcpClient, sim: SimMeter) -> None:
    grid = address_of(sim, "Grid")

    async def status() -> tuple[int, int]:
        rr = await client.read_input_registers(0, count=8, device_id=1)
        return rr.registers[0], rr.registers[7]  # online, failed polls (low word)

    async def grid_exception() -> int | None:
        rr = await client.read_input_registers(grid, count=2, device_id=1)
        return rr.exception_code if rr.isError() else None

    assert await status() == (0, 0)  # never polled: offline
    assert await grid_exception() == 0x02  # no register name known yet: nothing pinned
    output.on_registers("main", tuple(RegisterInfo(r.name, r.type_code, r.idx, r.did)
                                      for r in sim.registers))
    assert await grid_exception() == 0x0B  # pinned now, but the meter has not answered
    output.on_availability(Availability("main", True, T0))
    output.on_reading(reading_at(sim, TS))
    assert await status() == (1, 0)
    assert await grid_exception() is None
    output.on_availability(Availability("main", False, T0 + 5, "timeout", failed_polls=3))
    assert await status() == (0, 3)
    assert await grid_exception() == 0x0B
    output.on_availability(Availability("main", True, T0 + 9))
    output.on_reading(reading_at(sim, TS + 9))
    assert await status() == (1, 0)
    rr = await client.read_input_registers(grid, count=2, device_id=1)
    assert client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32) == \
        pytest.approx(sim.rate("Grid", TS + 9), rel=1e-6)


async def test_exceptions_for_addresses_counts_and_functions(
        output: ModbusOutput, client: AsyncModbusTcpClient, sim: SimMeter) -> None:
    output.on_reading(reading_at(sim, TS))
    outside = await client.read_holding_registers(50, count=1, device_id=1)
    assert (outside.function_code, outside.exception_code) == (0x83, 0x02)
    straddling = await client.read_holding_registers(6, count=4, device_id=1)  # 8.. unmapped
    assert straddling.exception_code == 0x02
    write = await client.write_register(100, 1, device_id=1)
    assert (write.function_code, write.exception_code) == (0x86, 0x01)
    reader, writer = await asyncio.open_connection("127.0.0.1", output.port)
    try:
        for tid, count in ((1, 0), (2, 126), (3, 2000)):
            writer.write(frame(tid, 1, struct.pack(">BHH", 3, 100, count)))
            assert await read_frame(reader) == (tid, 1, bytes((0x83, 0x03)))
        writer.write(frame(4, 1, struct.pack(">BHH", 4, 65535, 2)))  # runs past 65535
        assert await read_frame(reader) == (4, 1, bytes((0x84, 0x02)))
        writer.write(frame(5, 1, b"\x03\x00"))  # truncated request
        assert await read_frame(reader) == (5, 1, bytes((0x83, 0x03)))
    finally:
        writer.close()


async def test_unknown_unit_gets_no_answer_by_default(output: ModbusOutput) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", output.port)
    try:
        # two requests in one segment: the unknown unit's is dropped, the next one answered
        writer.write(frame(7, 99, struct.pack(">BHH", 3, 0, 1))
                     + frame(8, 1, struct.pack(">BHH", 3, 0, 1)))
        tid, unit, pdu = await read_frame(reader)
        assert (tid, unit, pdu[:2]) == (8, 1, b"\x03\x02")
    finally:
        writer.close()
    assert output.stats.unanswered == 1


async def test_unknown_unit_exception_mode(tmp_path: Path) -> None:
    out = await start_output(tmp_path, "registers:\n - {address: 0, source: 'status:online',"
                                       " type: uint16}\n", unknown_unit="exception")
    c = AsyncModbusTcpClient("127.0.0.1", port=out.port, timeout=3, retries=0)
    try:
        assert await c.connect()
        rr = await c.read_holding_registers(0, count=1, device_id=99)
        assert (rr.function_code, rr.exception_code) == (0x83, 0x0B)
    finally:
        c.close()
        await out.close()


async def test_pipelined_and_split_frames(output: ModbusOutput, sim: SimMeter) -> None:
    output.on_reading(reading_at(sim, TS))
    reader, writer = await asyncio.open_connection("127.0.0.1", output.port)
    try:
        requests = b"".join(frame(tid, 1, struct.pack(">BHH", 4, 0, 1)) for tid in range(1, 51))
        writer.write(requests[:5])  # a frame split across segments
        await writer.drain()
        writer.write(requests[5:])
        for tid in range(1, 51):
            assert await read_frame(reader) == (tid, 1, b"\x04\x02\x00\x01")
    finally:
        writer.close()


async def test_bad_protocol_id_closes_the_connection(output: ModbusOutput) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", output.port)
    try:
        writer.write(struct.pack(">HHHB", 1, 7, 6, 1) + struct.pack(">BHH", 3, 0, 1))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF, no answer
    finally:
        writer.close()


async def test_many_concurrent_clients(output: ModbusOutput, sim: SimMeter) -> None:
    output.on_reading(reading_at(sim, TS))
    grid = address_of(sim, "Grid")
    expected = pytest.approx(sim.rate("Grid", TS), rel=1e-6)

    async def one() -> list[float]:
        c = AsyncModbusTcpClient("127.0.0.1", port=output.port, timeout=5, retries=0)
        try:
            assert await c.connect()
            got = []
            for _ in range(20):
                rr = await c.read_input_registers(grid, count=2, device_id=1)
                got.append(c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32))
            return got
        finally:
            c.close()

    results = await asyncio.gather(*(one() for _ in range(40)))
    assert all(v == expected for values in results for v in values)


async def test_addresses_never_move_across_reconfiguration_and_restarts(
        tmp_path: Path, sim: SimMeter) -> None:
    state = tmp_path / "state"
    first_names = [r.name for r in sim.registers]

    async def run(feed: Callable[[ModbusOutput], None],
                  read: dict[str, int]) -> dict[str, float]:
        # energy counters off: only register slots, the k-th name at slot k
        out = ModbusOutput(ModbusConfig(host="127.0.0.1", port=0),
                           [replace(meter_config(), energy=EnergyConfig(enabled=False))],
                           state, clock=lambda: T0)
        await out.start()
        c = AsyncModbusTcpClient("127.0.0.1", port=out.port, timeout=3, retries=0)
        try:
            assert await c.connect()
            feed(out)
            got = {}
            for name, addr in read.items():
                rr = await c.read_input_registers(addr, count=2, device_id=1)
                got[name] = c.convert_from_registers(rr.registers, c.DATATYPE.FLOAT32)
            return got
        finally:
            c.close()
            await out.close()

    plan = {name: 100 + 6 * k for k, name in enumerate(first_names)}
    got = await run(lambda out: out.on_reading(reading_at(sim, TS)), plan)
    assert got == {n: pytest.approx(sim.rate(n, TS), rel=1e-6) for n in first_names}

    # the meter is reconfigured: "use" removed, a register added, the rest reversed
    sim.remove_registers(["use"])
    sim.add_register("Heat Pump", "P", Wave(800.0, 200.0, 300.0))
    sim.reorder_registers(reversed([r.name for r in sim.registers]))
    plan_after = {**plan, "Heat Pump": 100 + 6 * len(first_names)}  # the next free slot
    got = await run(lambda out: out.on_reading(reading_at(sim, TS + 60)), plan_after)
    for name in plan_after:
        if name == "use":
            assert math.isnan(got[name])  # its slot stays, reading "not available"
        else:
            assert got[name] == pytest.approx(sim.rate(name, TS + 60), rel=1e-6), name

    # and once more after another restart
    got = await run(lambda out: out.on_reading(reading_at(sim, TS + 120)), plan_after)
    assert {n: v for n, v in got.items() if n != "use"} == {
        n: pytest.approx(sim.rate(n, TS + 120), rel=1e-6) for n in plan_after if n != "use"}


async def test_the_worked_example_of_the_docs(output: ModbusOutput) -> None:
    """docs/MODBUS.md: `Grid`, second name seen, 1234.5 W and 10.5 kWh, read with FC04."""
    output.on_registers("main", (RegisterInfo("use", "P", 0), RegisterInfo("Grid", "P", 3)))
    output.on_reading(Reading("main", TS, (
        RegisterValue("use", "P", "W", 900.0, 1.0, "kWh"),
        RegisterValue("Grid", "P", "W", 1234.5, 10.5, "kWh"))))
    reader, writer = await asyncio.open_connection("127.0.0.1", output.port)
    try:
        writer.write(bytes.fromhex("0001 0000 0006 01 04 006A 0002"))
        assert await asyncio.wait_for(reader.readexactly(13), 5) == bytes.fromhex(
            "0001 0000 0007 01 04 04 449A 5000")
        writer.write(bytes.fromhex("0002 0000 0006 01 04 006C 0004"))
        assert (await asyncio.wait_for(reader.readexactly(17), 5))[9:] == bytes.fromhex(
            "4025 0000 0000 0000")
    finally:
        writer.close()


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_idle_client_is_evicted_at_the_connection_limit(
        output: ModbusOutput, sim: SimMeter) -> None:
    output.on_reading(reading_at(sim, TS))
    server = ModbusServer("127.0.0.1", 0, output.image, max_connections=2, idle_evict_s=0.0)
    await server.start()
    try:
        old_reader, old_writer = await _open(server.port)
        await async_wait_until(lambda: server.stats.connections == 1)
        busy_reader, busy_writer = await _open(server.port)
        busy_writer.write(frame(1, 1, struct.pack(">BHH", 4, 0, 1)))
        assert await read_frame(busy_reader) == (1, 1, b"\x04\x02\x00\x01")
        new_reader, new_writer = await _open(server.port)  # the limit is reached
        assert await asyncio.wait_for(old_reader.read(), 5) == b""  # the idle one is dropped
        new_writer.write(frame(2, 1, struct.pack(">BHH", 4, 0, 1)))
        assert await read_frame(new_reader) == (2, 1, b"\x04\x02\x00\x01")
        assert server.stats.evicted == 1
        assert server.stats.refused == 0
        for w in (old_writer, busy_writer, new_writer):
            w.close()
    finally:
        await server.close()


async def test_no_eviction_before_the_idle_time(output: ModbusOutput) -> None:
    server = ModbusServer("127.0.0.1", 0, output.image, max_connections=1, idle_evict_s=3600)
    await server.start()
    try:
        first_reader, first_writer = await _open(server.port)
        await async_wait_until(lambda: server.stats.connections == 1)
        second_reader, second_writer = await _open(server.port)
        assert await asyncio.wait_for(second_reader.read(), 5) == b""  # refused
        assert server.stats.refused == 1
        assert server.stats.evicted == 0
        first_writer.write(frame(3, 1, struct.pack(">BHH", 4, 0, 1)))
        assert (await read_frame(first_reader))[0] == 3  # the first one is still served
        first_writer.close()
        second_writer.close()
    finally:
        await server.close()
