"""Feeding the Modbus output as the poller would, from the simulator's deterministic values."""

from __future__ import annotations

import struct
from pathlib import Path

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
