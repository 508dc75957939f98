"""Interop: Debian's ``mbpoll`` reads the default map's float32 and status block.

mbpoll numbers references from 1 (``-r ADDR+1``; ``-0`` would make them 0-based), reads
holding registers with ``-t 4`` and input registers with ``-t 3``, and needs ``-B`` for
ABCD (big-endian word order) floats.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import MeterConfig, ModbusConfig
from gateway.meter import type_code
from gateway.modbus import ModbusOutput
from gateway.model import Availability, Reading, RegisterValue
from gateway.secret import Secret
from gateway.simulator import SimMeter
from tests.support.broker import require_binary

T0 = 1_750_000_000.0
TS = T0 - 2.2


def reading_at(sim: SimMeter, t: float) -> Reading:
    values = []
    for reg in sim.registers:
        meaning = type_code(reg.type_code)
        values.append(RegisterValue(reg.name, reg.type_code, meaning.unit, sim.rate(reg.name, t),
                                    None, meaning.cumulative_unit))
    return Reading("main", t, tuple(values))


@pytest.fixture
async def output(tmp_path: Path) -> AsyncIterator[ModbusOutput]:
    meter = MeterConfig(id="main", url="http://127.0.0.1:9", username="owner",
                        password=Secret("pw"), modbus_unit_id=5)
    out = ModbusOutput(ModbusConfig(host="127.0.0.1", port=0), [meter], tmp_path,
                       clock=lambda: T0)
    await out.start()
    yield out
    await out.close()


async def mbpoll(port: int, *args: str) -> dict[int, str]:
    proc = await asyncio.create_subprocess_exec(
        require_binary("mbpoll"), "-m", "tcp", "-a", "5", "-1", "-o", "3", "-p", str(port),
        *args, "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return {int(ref): value for ref, value in re.findall(r"^\[(\d+)\]:\s+(\S+)", out.decode(),
                                                         re.MULTILINE)}


async def test_mbpoll_reads_a_float32(output: ModbusOutput) -> None:
    sim = SimMeter(clock=lambda: T0)
    output.on_reading(reading_at(sim, TS))
    k = [r.name for r in sim.registers].index("Grid")
    ref = 100 + 6 * k + 1
    got = await mbpoll(output.port, "-t", "4:float", "-B", "-r", str(ref), "-c", "1")
    expected = struct.unpack(">f", struct.pack(">f", sim.rate("Grid", TS)))[0]
    assert float(got[ref]) == pytest.approx(expected, rel=1e-5)  # mbpoll prints %g


async def test_mbpoll_reads_the_status_block(output: ModbusOutput) -> None:
    sim = SimMeter(clock=lambda: T0)
    output.on_reading(reading_at(sim, TS))
    got = await mbpoll(output.port, "-t", "3", "-r", "1", "-c", "2")  # FC04
    assert got == {1: "1", 2: "2"}  # online, 2.2 s old
    got = await mbpoll(output.port, "-t", "4:int", "-B", "-r", "3", "-c", "1")
    assert int(got[3]) == int(TS)  # the meter timestamp, uint32 seconds
    output.on_availability(Availability("main", False, T0, "timeout", failed_polls=4))
    got = await mbpoll(output.port, "-t", "4", "-r", "1", "-c", "8")
    assert (got[1], got[8]) == ("0", "4")
