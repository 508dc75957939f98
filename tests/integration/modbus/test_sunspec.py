"""The SunSpec map, walked the way a SunSpec client does: marker at 40000, then each model's
ID and length, to the end model. Lengths and offsets are SunSpec's (models 1 and 213); the
values travel end to end: simulator -> real client over HTTP -> output -> pymodbus."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import MeterConfig, ModbusConfig
from gateway.meter import WebApiClient
from gateway.modbus import ModbusOutput
from gateway.model import Availability, EnergyCount, Reading
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from gateway.simulator.system import FIRMWARE
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME

BASE = 40000
# model 213 point offsets (float32, 2 registers each) from the SunSpec model definition
M213 = {"A": 0, "PhV": 8, "PhVphA": 10, "PhVphB": 12, "Hz": 24, "W": 26, "VA": 34, "VAR": 42,
        "PF": 50, "TotWhExp": 58, "TotWhImp": 66, "TotVArhExpQ4phC": 120}
USER_MAP = """\
extends: sunspec
inputs:
  current: "Amps #1"
  voltage_a: Voltage L1
  voltage_b: null
  apparent_power: Apparent
  reactive_power: Reactive
  energy_export: Solar+
"""
Served = tuple[ModbusOutput, AsyncModbusTcpClient, SimMeter, Reading]


def f32(value: float) -> float:
    rounded: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return rounded


@pytest.fixture
async def served(tmp_path: Path, sim_meter: SimMeter, sim_server: SimServer
                 ) -> AsyncIterator[Served]:
    path = tmp_path / "meter-sunspec.yaml"
    path.write_text(USER_MAP, encoding="utf-8")
    meter = MeterConfig(id="main", url=sim_server.url_for(sim_meter), username=SIM_USERNAME,
                        password=Secret(SIM_PASSWORD), modbus_unit_id=3,
                        modbus_mapping=str(path))
    out = ModbusOutput(ModbusConfig(host="127.0.0.1", port=0), [meter], tmp_path / "state")
    await out.start()
    async with WebApiClient.from_config(meter) as meter_client:
        out.on_identity("main", await meter_client.identity())
        reading = with_counters(await meter_client.read())
    out.on_reading(reading)
    client = AsyncModbusTcpClient("127.0.0.1", port=out.port, timeout=3, retries=0)
    assert await client.connect()
    yield out, client, sim_meter, reading
    client.close()
    await out.close()


# import/export counters as the energy service hands them on (raw W·s, docs/ENERGY.md)
COUNTERS = {"Grid": (36_000_123, 7_200_456), "Solar+": (90_000_000, 0)}


def with_counters(reading: Reading) -> Reading:
    return replace(reading, registers=tuple(
        replace(v, energy=EnergyCount(*COUNTERS[v.name], math.floor(reading.ts) - 1,
                                      1 / 3.6e6, "kWh")) if v.name in COUNTERS else v
        for v in reading.registers))


async def registers(client: AsyncModbusTcpClient, address: int, count: int) -> bytes:
    rr = await client.read_holding_registers(address, count=count, device_id=3)
    assert not rr.isError(), (address, rr)
    return b"".join(struct.pack(">H", r) for r in rr.registers)


async def test_model_chain(served: Served) -> None:
    client = served[1]
    assert await registers(client, BASE, 2) == b"SunS"
    chain = []
    address = BASE + 2
    while True:
        model_id, length = struct.unpack(">HH", await registers(client, address, 2))
        chain.append((model_id, length))
        if model_id == 0xFFFF:
            break
        assert len(await registers(client, address + 2, min(length, 125))) == 2 * min(length, 125)
        address += 2 + length
    assert chain == [(1, 66), (213, 124), (0xFFFF, 0)]
    assert address == BASE + 2 + 68 + 126  # the end model where the lengths say
    after_end = await client.read_holding_registers(address + 2, count=1, device_id=3)
    assert after_end.exception_code == 0x02


async def test_common_model(served: Served) -> None:
    _, client, sim, _ = served
    body = await registers(client, BASE + 4, 66)

    def text(offset: int, length: int) -> bytes:
        return body[2 * offset:2 * (offset + length)].rstrip(b"\0")

    assert text(0, 16) == b"eGauge"  # Mn
    assert text(16, 16) == sim.model.encode()  # Md
    assert text(32, 8) == sim.hostname.encode()[:16]  # Opt: the hostname
    assert text(40, 8) == FIRMWARE.encode()  # Vr
    assert text(48, 16) == sim.serial.encode()  # SN
    assert struct.unpack(">HH", body[128:132]) == (3, 0x8000)  # DA = the unit id, Pad


async def test_meter_model_213(served: Served) -> None:
    _, client, sim, reading = served
    ts = math.floor(reading.ts)  # the simulator's values are those of the whole second
    start = BASE + 2 + 68
    assert struct.unpack(">HH", await registers(client, start, 2)) == (213, 124)
    body = await registers(client, start + 2, 124)

    def point(name: str) -> float:
        value: float = struct.unpack(">f", body[2 * M213[name]:2 * M213[name] + 4])[0]
        return value

    assert point("W") == f32(sim.rate("Grid", ts))
    assert point("A") == f32(sim.rate("Amps #1", ts))
    assert point("PhVphA") == f32(sim.rate("Voltage L1", ts))
    assert point("Hz") == f32(sim.rate("Frequency", ts))
    assert point("VA") == f32(sim.rate("Apparent", ts))
    assert point("VAR") == f32(sim.rate("Reactive", ts))
    # the energies are the counters in Wh: W·s / 3600
    imported, exported = COUNTERS["Grid"][0], COUNTERS["Solar+"][1]
    assert point("TotWhImp") == f32(imported / 3600)  # energy_import: Grid (the default)
    assert point("TotWhExp") == f32(exported / 3600)  # energy_export: Solar+ (the file's)
    for unset in ("PhVphB", "PhV", "PF", "TotVArhExpQ4phC"):
        assert math.isnan(point(unset)), unset  # "not implemented"
    assert body[-4:] == b"\0\0\0\0"  # Evt: no events


async def test_offline_meter_hides_the_sunspec_block(served: Served) -> None:
    out, client, _, reading = served
    out.on_availability(Availability("main", False, reading.ts + 5, "timeout", 3))
    rr = await client.read_holding_registers(BASE, count=2, device_id=3)
    assert rr.exception_code == 0x0B
    assert (await registers(client, 0, 1)) == b"\0\0"  # the status block still answers
