"""Feeding the Modbus output as the poller would, from the simulator's deterministic values;
reading a unit's values with the timestamp they belong to."""

from __future__ import annotations

import struct
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from gateway.config import MeterConfig, ModbusConfig
from gateway.meter import type_code
from gateway.modbus import ModbusOutput
from gateway.model import Availability, Reading, RegisterValue
from gateway.secret import Secret
from gateway.simulator import SimMeter

T0 = 1_750_000_000.0  # the gateway's clock in these tests
TS = T0 - 0.75  # the meter timestamp of the values fed


def meter_config(meter_id: str = "main", unit: int = 1, mapping: str = "default") -> MeterConfig:
    return MeterConfig(id=meter_id, url="http://127.0.0.1:9", username="owner",
                       password=Secret("pw"), modbus_unit_id=unit, modbus_mapping=mapping)


def reading_at(sim: SimMeter, t: float, meter_id: str = "main") -> Reading:
    """What the client reports for the simulator at ``t`` (cumulative in the type's unit)."""
    values = []
    for reg in sim.registers:
        meaning = type_code(reg.type_code)
        raw = sim.raw(reg.name, t)
        values.append(RegisterValue(reg.name, reg.type_code, meaning.unit, sim.rate(reg.name, t),
                                    meaning.cumulative(raw), meaning.cumulative_unit, raw))
    return Reading(meter_id, t, tuple(values), received=t + 0.1)


def address_of(sim: SimMeter, name: str, source: str = "rate") -> int:
    """The default map's rule: the k-th register name seen gets 100 + 6k (+2: cumulative)."""
    k = [r.name for r in sim.registers].index(name)
    return 100 + 6 * k + (2 if source == "cumulative" else 0)


def f32(value: float) -> float:
    """``value`` as a float32 register pair carries it."""
    rounded: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return rounded


async def rate_and_ts(client: AsyncModbusTcpClient, unit: int, address: int
                      ) -> tuple[float, int] | None:
    """The float32 at ``address`` of ``unit`` and the meter timestamp of the values (status
    block), read so that both belong to one poll; None while the unit is offline or not
    served, or when a poll came in between."""
    async def stamp() -> tuple[int, int] | None:
        rr = await client.read_input_registers(0, count=8, device_id=unit)
        if rr.isError():
            return None
        online, _, ts, _, _ = struct.unpack(">HHIII", b"".join(struct.pack(">H", r)
                                                             for r in rr.registers))
        return online, ts

    before = await stamp()
    rr = await client.read_input_registers(address, count=2, device_id=unit)
    after = await stamp()
    if before is None or rr.isError() or before != after or not before[0]:
        return None
    value = client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32)
    assert isinstance(value, float)
    return value, before[1]
def mbap(tid: int, length: int, unit: int = 1, protocol: int = 0) -> bytes:
    """An MBAP header: transaction, protocol id, length (unit id + PDU), unit id."""
    return struct.pack(">HHHB", tid, protocol, length, unit)


def read_request(tid: int, address: int = 0, count: int = 1, unit: int = 1, fc: int = 4) -> bytes:
    """A complete FC03/FC04 request frame."""
    return mbap(tid, 6, unit) + struct.pack(">BHH", fc, address, count)


def online_output(tmp_path: Path, config: ModbusConfig | None = None
                  ) -> tuple[ModbusOutput, SimMeter]:
    """A Modbus output (not started) for meter ``main`` (unit 1), online, holding one reading
    of the simulator at ``TS``; its images can back a :class:`ModbusServer` of a test."""
    out = ModbusOutput(config or ModbusConfig(host="127.0.0.1", port=0), [meter_config()],
                       tmp_path / "state", clock=lambda: T0)
    sim = SimMeter(serial="SIM0042", clock=lambda: T0)
    out.on_availability(Availability("main", True, T0))
    out.on_reading(reading_at(sim, TS))
    return out, sim
