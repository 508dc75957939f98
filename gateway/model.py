"""The values that flow from the pollers through the hub to the outputs.

These are the project's own types: outputs never see httpx, and pollers never see MQTT or
Modbus. All are frozen; a new poll makes new objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RegisterInfo:
    """Metadata of one meter register (``/register`` without rows)."""

    name: str
    type_code: str
    idx: int
    did: int | None = None  # None for virtual registers
    formula: str | None = None  # the virtual formula, when the meter gave one

    @property
    def virtual(self) -> bool:
        return self.did is None


@dataclass(frozen=True, slots=True)
class EnergyCount:
    """The import/export split of one register's cumulative value (docs/ENERGY.md): every
    second's change of the raw value went to ``imported`` when positive and to ``exported``
    (as a positive number) when negative, for every second up to and including ``through``
    (whole meter seconds, Unix time). Both are exact raw counts (W·s for power);
    ``factor`` turns them into ``unit`` (kWh, kVAh, kvarh, ...)."""

    imported: int
    exported: int
    through: int
    factor: float
    unit: str

    @property
    def import_value(self) -> float:
        return self.imported * self.factor

    @property
    def export_value(self) -> float:
        return self.exported * self.factor


@dataclass(frozen=True, slots=True)
class RegisterValue:
    """One register at one meter timestamp, in physical units."""

    name: str
    type_code: str
    unit: str  # unit of ``rate``
    rate: float | None  # current rate (W, V, A, ...); None when the meter gave none
    cumulative: float | None  # physical cumulative value in ``cumulative_unit``
    cumulative_unit: str
    raw: int | None = None  # the meter's raw int64 accumulator, exact
    energy: EnergyCount | None = None  # the import/export counters, where they exist


@dataclass(frozen=True, slots=True)
class LocalValue:
    """One sensor of ``/local`` (``values`` section): rates n/m/f, type code."""

    name: str
    type_code: str
    unit: str
    normal: float | None = None
    mean: float | None = None
    freq: float | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """One successful poll of one meter."""

    meter: str
    ts: float  # the meter's own timestamp (Unix seconds) of the values
    registers: tuple[RegisterValue, ...]
    local: tuple[LocalValue, ...] = ()
    received: float = 0.0  # gateway wall clock when the reply arrived
    row: int | None = None  # the whole meter second of the cumulative values' stored row

    def by_name(self) -> Mapping[str, RegisterValue]:
        return {r.name: r for r in self.registers}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a meter is (``/sys`` and ``/config/net/hostname``)."""

    serial: str
    model: str
    firmware: str
    hostname: str = ""
    uptime_s: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a meter currently answers; ``since`` is the wall clock of the last flip."""

    meter: str
    online: bool
    since: float
    reason: str = ""
    failed_polls: int = 0


@dataclass(frozen=True, slots=True)
class RegisterChange:
    """A register renamed or retyped on the meter, as far as the gateway can tell: the same
    ``idx`` and ``did`` now under another name (``old_name != new_name``), or a name whose
    type code changed (``old_type != new_type``). ``at``: gateway wall clock."""

    meter: str
    old_name: str
    new_name: str
    old_type: str
    new_type: str
    at: float = 0.0

    @property
    def renamed(self) -> bool:
        return self.old_name != self.new_name

    @property
    def retyped(self) -> bool:
        return self.old_type != self.new_type
