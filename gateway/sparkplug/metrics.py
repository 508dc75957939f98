"""What the Edge Node reports: its own metrics, each meter's (device) metrics and each
register's metrics, as births declare them and with the values data messages carry.

A register's metric set is built by one function, :func:`register_metrics`; each metric
there reads its value from the register's :class:`~gateway.model.RegisterValue` (of a live
reading or a backfilled history row alike). A register with energy counters (docs/ENERGY.md)
also has ``Import`` and ``Export`` metrics (its counters; a history row carries none).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway import __version__
from gateway.commands import DEFAULT_RELAY_COUNT, Need, Policy
from gateway.config import CommandPolicy
from gateway.meter import type_code
from gateway.model import Identity, Reading, RegisterValue
from gateway.sparkplug.payload import DataType, Property, Value

# the node (gateway) metrics; the first two carry no alias (Sparkplug 3.0.0 §6.4.20, §4.2.1)
BDSEQ: Final = "bdSeq"
NODE_REBIRTH: Final = "Node Control/Rebirth"
VERSION: Final = "Properties/Software Version"
METERS: Final = "Status/Meters"
METERS_ONLINE: Final = "Status/Meters Online"

# the device (meter) metrics
SERIAL: Final = "Properties/Serial Number"
MAKE: Final = "Properties/Hardware Make"
MODEL: Final = "Properties/Hardware Model"
FIRMWARE: Final = "Properties/FW"
HOSTNAME: Final = "Properties/Hostname"
ONLINE: Final = "Status/Online"
DATA_AGE: Final = "Status/Data Age"
DEVICE_REBIRTH: Final = "Device Control/Rebirth"
DEVICE_REBOOT: Final = "Device Control/Reboot"
RELAY_PREFIX: Final = "Relays/"

# property keys: engUnit is the engineering-unit property hosts (Ignition) map to their tags
ENG_UNIT: Final = "engUnit"
EGAUGE_TYPE: Final = "egaugeType"
REGISTER_NAME: Final = "registerName"


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A metric as a birth declares it (its alias comes from the alias book)."""

    name: str
    datatype: DataType
    properties: tuple[Property, ...] = ()
    aliased: bool = True


@dataclass(frozen=True, slots=True)
class RegisterMetric:
    """One metric of a register and how its value is read from the register's value."""

    definition: MetricDef
    value_of: Callable[[RegisterValue], float | None]


def finite(value: float | None) -> float | None:
    """``value``, or None (a null metric) for a missing or non-finite number."""
    return value if value is not None and math.isfinite(value) else None


def _import(v: RegisterValue) -> float | None:
    return None if v.energy is None else finite(v.energy.import_value)


def _export(v: RegisterValue) -> float | None:
    return None if v.energy is None else finite(v.energy.export_value)


def register_metrics(slug: str, name: str, code: str, counters: bool = False
                     ) -> tuple[RegisterMetric, ...]:
    """The metrics of the register ``name`` (type code ``code``, metric names under
    ``Registers/<slug>/``): its rate and its cumulative value, as Doubles with the unit, the
    eGauge type code and the register's own name as properties; with ``counters`` (it has
    energy counters) also ``Import`` and ``Export`` in its cumulative unit."""
    tc = type_code(code)
    base = f"Registers/{slug}"

    def properties(unit: str) -> tuple[Property, ...]:
        return (Property(ENG_UNIT, DataType.STRING, unit),
                Property(EGAUGE_TYPE, DataType.STRING, code),
                Property(REGISTER_NAME, DataType.STRING, name))

    metrics = (
        RegisterMetric(MetricDef(f"{base}/Rate", DataType.DOUBLE, properties(tc.unit)),
                       lambda v: finite(v.rate)),
        RegisterMetric(MetricDef(f"{base}/Cumulative", DataType.DOUBLE,
                                 properties(tc.cumulative_unit)),
                       lambda v: finite(v.cumulative)),
    )
    if not counters:
        return metrics
    return (*metrics,
            RegisterMetric(MetricDef(f"{base}/Import", DataType.DOUBLE,
                                     properties(tc.cumulative_unit)), _import),
            RegisterMetric(MetricDef(f"{base}/Export", DataType.DOUBLE,
                                     properties(tc.cumulative_unit)), _export))


def node_metrics() -> tuple[MetricDef, ...]:
    """The metrics of the node's NBIRTH."""
    return (
        MetricDef(BDSEQ, DataType.INT64, aliased=False),
        MetricDef(NODE_REBIRTH, DataType.BOOLEAN, aliased=False),
        MetricDef(VERSION, DataType.STRING),
        MetricDef(METERS, DataType.INT32),
        MetricDef(METERS_ONLINE, DataType.INT32),
    )


def node_values(bdseq: int, meters: int, online: int) -> dict[str, Value]:
    return {BDSEQ: bdseq, NODE_REBIRTH: False, VERSION: __version__, METERS: meters,
            METERS_ONLINE: online}


@dataclass(frozen=True, slots=True)
class Writable:
    """What a meter's DBIRTH offers to write, from its ``commands.allow``."""

    reboot: bool = False
    relays: int = 0

    @classmethod
    def of(cls, commands: CommandPolicy) -> Writable:
        policy = Policy(commands.allow)
        return cls(policy.allows(Need("reboot")),
                   DEFAULT_RELAY_COUNT if policy.allows(Need("relay")) else 0)


def relay_metric(relay: int) -> str:
    return f"{RELAY_PREFIX}{relay}"


def device_metrics(writable: Writable) -> tuple[MetricDef, ...]:
    """The metrics of a meter's DBIRTH besides its registers'."""
    defs = [
        MetricDef(SERIAL, DataType.STRING), MetricDef(MAKE, DataType.STRING),
        MetricDef(MODEL, DataType.STRING), MetricDef(FIRMWARE, DataType.STRING),
        MetricDef(HOSTNAME, DataType.STRING), MetricDef(ONLINE, DataType.BOOLEAN),
        MetricDef(DATA_AGE, DataType.INT64, (Property(ENG_UNIT, DataType.STRING, "s"),)),
        MetricDef(DEVICE_REBIRTH, DataType.BOOLEAN),
    ]
    if writable.reboot:
        defs.append(MetricDef(DEVICE_REBOOT, DataType.BOOLEAN))
    defs.extend(MetricDef(relay_metric(n), DataType.BOOLEAN)
                for n in range(1, writable.relays + 1))
    return tuple(defs)


def device_values(identity: Identity, reading: Reading, online: bool,
                  relays: Mapping[int, bool]) -> dict[str, Value]:
    """The values of :func:`device_metrics` (a relay not switched through the gateway yet
    is null: its state is not read from the meter)."""
    values: dict[str, Value] = {
        SERIAL: identity.serial, MAKE: "eGauge", MODEL: identity.model,
        FIRMWARE: identity.firmware, HOSTNAME: identity.hostname, ONLINE: online,
        DATA_AGE: max(0, math.floor((reading.received or reading.ts) - reading.ts)),
        DEVICE_REBIRTH: False, DEVICE_REBOOT: False,
    }
    values.update((relay_metric(n), state) for n, state in relays.items())
    return values
