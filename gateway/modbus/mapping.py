"""Register maps: their types (the built-in ``maps/*.yaml`` and users' own files are loaded by
:mod:`gateway.modbus.loader`).

A map is a list of points, each pinning one value (a meter register's rate or cumulative
value, a status field, an identity string, a constant) to an address with a type, a word
order and a scale; optionally an ``auto`` block that gives every meter register not named in
the list a slot of its own (see :mod:`gateway.modbus.pins`). A map may ``extends:`` a built-in
one and override its ``inputs`` (the meter register names that feed its points). A map may
also declare writable points (used only with ``modbus.writes``): ``coils`` that switch relays
and a ``command`` register whose written code runs an action. The checks live in
:mod:`gateway.modbus.mapfile` and :mod:`gateway.modbus.writemap`; docs/MODBUS.md has the
format.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.modbus.codec import TYPES, Codec

BUILTIN: Final = ("default", "sunspec")
# a register's rate, cumulative value, raw accumulator; its energy counters (docs/ENERGY.md)
# and its rate in the import or export direction (0 in the other)
METER_SOURCES: Final = ("rate", "cumulative", "raw", "import", "export", "import_rate",
                        "export_rate")
COUNTER_ROLES: Final = ("import", "export")
STATUS_FIELDS: Final = ("online", "age", "timestamp", "timestamp_us", "failed_polls")
IDENTITY_FIELDS: Final = ("serial", "model", "firmware", "hostname")
SOURCES: Final = (
    *METER_SOURCES,
    *(f"status:{f}" for f in STATUS_FIELDS),
    *(f"identity:{f}" for f in IDENTITY_FIELDS),
    "const", "none", "unit_id",
)


def counter_name(register: str, role: str) -> str:
    """The name that pins an auto slot to a register's import or export counter."""
    return f"{register} {role}"


def counter_type(code: str, role: str) -> str:
    """The type a counter's slot pin records (``P/import``): tells it from a register."""
    return f"{code}/{role}"


def counter_of(name: str, pin_type: str) -> tuple[str, str, str] | None:
    """``(register, role, type code)`` of a counter's slot pin; None for a register's."""
    code, slash, role = pin_type.rpartition("/")
    if not slash or role not in COUNTER_ROLES or not name.endswith(" " + role):
        return None
    return name[: -len(role) - 1], role, code


@dataclass(frozen=True, slots=True)
class Point:
    """One value at one address. ``register`` names the meter register for meter sources
    (``None`` when the map's input for it is unset: the point then reads "not available")."""

    address: int
    name: str
    source: str
    type: str
    register: str | None = None
    input: str | None = None  # the map input that names ``register``
    scale: float = 1.0
    word_order: str = "ABCD"
    unit: str = ""
    description: str = ""
    length: int = 0  # registers, strings only
    value: int | float | str | None = None  # const only

    def codec(self) -> Codec:
        return Codec(TYPES[self.type], self.word_order, self.scale, self.length)

    @property
    def size(self) -> int:
        return self.length if self.type == "string" else TYPES[self.type].registers

    @property
    def end(self) -> int:
        """The last address the point covers."""
        return self.address + self.size - 1


@dataclass(frozen=True, slots=True)
class SlotField:
    """One value of an auto slot, e.g. the rate as float32."""

    source: str
    type: str
    scale: float = 1.0
    word_order: str = "ABCD"

    @property
    def size(self) -> int:
        return TYPES[self.type].registers


@dataclass(frozen=True, slots=True)
class Auto:
    """Automatic pinning: slot ``k`` covers ``start + k*stride`` .. ``+ stride - 1``."""

    start: int
    slot: tuple[SlotField, ...]

    @property
    def stride(self) -> int:
        return sum(f.size for f in self.slot)


@dataclass(frozen=True, slots=True)
class Coil:
    """A writable coil: ON (0xFF00) closes relay ``relay`` (1-based), OFF opens it."""

    address: int
    name: str
    relay: int
    device: MappingABC[str, Any] | None = None  # /ctrl device attributes, as in ``relay``
    description: str = ""

    def fields(self, on: bool) -> dict[str, Any]:
        """The ``relay`` request that writing ``on`` makes."""
        fields: dict[str, Any] = {"relay": self.relay, "state": "closed" if on else "open"}
        if self.device:
            fields["device"] = dict(self.device)
        return fields


@dataclass(frozen=True, slots=True)
class CommandCode:
    """What writing ``code`` to the command register asks for: an action and its fields."""

    code: int
    action: str
    fields: MappingABC[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandRegister:
    """A write-only holding register; each known code written to it is one request."""

    address: int
    name: str
    codes: MappingABC[int, CommandCode]
    description: str = ""


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A checked register map."""

    source: str  # the built-in name or the file path
    points: tuple[Point, ...]
    auto: Auto | None = None
    description: str = ""
    inputs: MappingABC[str, str | None] = field(default_factory=dict)
    coils: tuple[Coil, ...] = ()
    command: CommandRegister | None = None

    def pinned_names(self) -> frozenset[str]:
        """Meter registers that have an explicit point (auto pinning leaves them alone)."""
        return frozenset(p.register for p in self.points
                         if p.source in METER_SOURCES and p.register is not None)
