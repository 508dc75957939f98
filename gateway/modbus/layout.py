"""A unit's complete address plan: the map's own points plus its auto-pinned slots.

Also the rows of ``map export`` (CSV, one row per point, like eGauge's own map export).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.config import EnergyConfig
from gateway.energy import counted
from gateway.meter import type_code
from gateway.modbus.mapping import (
    COUNTER_ROLES,
    Auto,
    Point,
    RegisterMap,
    counter_name,
    counter_of,
    counter_type,
)
from gateway.modbus.pins import Pins
from gateway.model import RegisterInfo

MAX_ADDRESS: Final = 65535
CSV_COLUMNS: Final = ("Address", "Name", "Description", "Type", "Scale", "Unit", "Word Order",
                      "Registers", "Source", "Register")


@dataclass(frozen=True, slots=True)
class Layout:
    """Every point of one unit, sorted by address, and the contiguous runs they form."""

    points: tuple[Point, ...]
    runs: tuple[tuple[int, int], ...]  # (first address, last address)
    dropped: tuple[str, ...] = ()  # pinned names whose slot now collides with the map

    @classmethod
    def build(cls, rmap: RegisterMap, pins: Pins | None = None,
              slot_points: SlotPoints | None = None) -> Layout:
        """The layout of ``rmap`` with ``pins``; ``slot_points`` shares the auto slots'
        points with the other units it was given to."""
        made = slot_points or SlotPoints()
        points = list(rmap.points)
        dropped: list[str] = []
        if rmap.auto is not None and pins is not None:
            explicit = rmap.pinned_names()
            taken = _intervals(rmap.points)
            for name, pin in pins.items():
                if name in explicit:
                    continue
                slot = made.of(rmap.auto, name, pin.slot, pin.type_code)
                if _collides(slot, taken):
                    dropped.append(name)
                else:
                    points.extend(slot)
        points.sort(key=lambda p: p.address)
        return cls(tuple(points), _runs(points), tuple(dropped))


class SlotPoints:
    """The points of each auto slot (:func:`auto_points`), made once for every layout they
    are given to: the units of a fleet of one meter model pin the same registers to the same
    slots, and points keep no state (at 200 meters, each unit's own had been 10 kB a unit)."""

    def __init__(self) -> None:
        self._made: dict[tuple[Auto, str, int, str], tuple[Point, ...]] = {}

    def of(self, auto: Auto, name: str, slot: int, code: str) -> tuple[Point, ...]:
        key = (auto, name, slot, code)
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = tuple(auto_points(auto, name, slot, code))
        return made


def polled_names(registers: Iterable[RegisterInfo], selected: Collection[str] | None
                 ) -> list[tuple[str, str]]:
    """``(name, type code)`` of the registers that are polled (``selected``: None for all), in
    the meter's register order (idx): the order in which new names get slots."""
    return [(r.name, r.type_code) for r in sorted(registers, key=lambda r: r.idx)
            if selected is None or r.name in selected]


def with_counters(names: Sequence[tuple[str, str]], pins: Pins, energy: EnergyConfig
                  ) -> tuple[list[tuple[str, str]], list[str]]:
    """``names`` (``(name, type code)``) followed by the slot names of their energy
    counters (``"<name> import"``, type ``"<code>/import"``, then export), for the registers
    that have counters; and the names left out because their slot is pinned to the other
    kind -- a register called ``"Grid import"`` where Grid's import counter holds that pin,
    or the other way round -- so that an address never changes what it serves."""
    real = {n for n, _ in names}
    wanted = [(n, c, False) for n, c in names]
    for n, c in names:
        if counted(energy, n, c):
            wanted.extend((counter_name(n, role), counter_type(c, role), True)
                          for role in COUNTER_ROLES)
    out: list[tuple[str, str]] = []
    clashes: list[str] = []
    for name, code, is_counter in wanted:
        pin = pins.get(name)
        pinned_counter = pin is not None and counter_of(name, pin.type_code) is not None
        if (is_counter and (name in real or (pin is not None and not pinned_counter))) or (
                not is_counter and pinned_counter):
            clashes.append(name)
        else:
            out.append((name, code))
    return out, clashes


def pin_new(rmap: RegisterMap, pins: Pins, names: Iterable[tuple[str, str]],
            skip: Collection[str] = ()) -> list[str]:
    """Give the names without a slot (but those with an explicit point of the map, and
    ``skip``) the map's next free auto slots, in order; update known names' type codes.
    The names that got a slot (none without an ``auto`` block)."""
    if rmap.auto is None:
        return []
    explicit = rmap.pinned_names()
    return pins.assign([(n, c) for n, c in names if n not in explicit and n not in skip],
                       usable_slots(rmap))


def usable_slots(rmap: RegisterMap) -> Iterator[int]:
    """Slot numbers of the map's auto block that fit below 65535 and clear its own points."""
    auto = rmap.auto
    if auto is None:
        return
    taken = _intervals(rmap.points)
    slot = 0
    while (first := auto.start + slot * auto.stride) + auto.stride - 1 <= MAX_ADDRESS:
        if not any(a <= first + auto.stride - 1 and first <= b for a, b in taken):
            yield slot
        slot += 1


def auto_points(auto: Auto, name: str, slot: int, code: str = "") -> list[Point]:
    """The points of one auto slot for register ``name`` (type code ``code`` gives units).
    A counter's slot (``code`` ``P/import``, name ``"<register> import"``) serves the
    register's import (export) rate where the slot has the rate, and its counter where the
    slot has the cumulative value."""
    counter = counter_of(name, code) if code else None
    base = counter[2] if counter is not None else code
    meaning = type_code(base) if base else None
    address = auto.start + slot * auto.stride
    points = []
    for f in auto.slot:
        source, register = f.source, name
        if counter is not None:
            register, role, _ = counter
            source = {"rate": f"{role}_rate", "cumulative": role}.get(f.source, "none")
        unit = ""
        if meaning is not None:
            unit = meaning.unit if f.source == "rate" else (
                meaning.cumulative_unit if f.source == "cumulative" else "")
        what = f"{f.source} of register {name!r}" if counter is None else (
            f"{'rate' if f.source == 'rate' else 'counter'} of {name!r}")
        points.append(Point(address, name, source, f.type,
                            register if source != "none" else None, None, f.scale,
                            f.word_order, unit, what))
        address += f.size
    return points


def _intervals(points: tuple[Point, ...] | list[Point]) -> list[tuple[int, int]]:
    return [(p.address, p.end) for p in points]


def _collides(points: Sequence[Point], taken: list[tuple[int, int]]) -> bool:
    return any(a <= p.end and p.address <= b for p in points for a, b in taken)


def _runs(points: list[Point]) -> tuple[tuple[int, int], ...]:
    runs: list[tuple[int, int]] = []
    for p in points:
        if runs and p.address == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], p.end)
        else:
            runs.append((p.address, p.end))
    return tuple(runs)


def point_unit(p: Point, type_codes: Mapping[str, str]) -> str:
    """A point's unit: the map's, else that of its register's type code (rate, cumulative)."""
    if p.unit or not p.register or p.register not in type_codes:
        return p.unit
    meaning = type_code(type_codes[p.register])
    return {"rate": meaning.unit, "cumulative": meaning.cumulative_unit,
            "import_rate": meaning.unit, "export_rate": meaning.unit,
            "import": meaning.cumulative_unit, "export": meaning.cumulative_unit
            }.get(p.source, "")


def export_csv(layout: Layout, type_codes: Mapping[str, str] | None = None) -> str:
    """The map as CSV; units come from the map, else from the register's type code."""
    codes = type_codes or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in layout.points:
        writer.writerow((p.address, p.name, p.description, p.type, f"{p.scale:g}",
                         point_unit(p, codes), p.word_order, p.size, p.source, p.register or ""))
    return out.getvalue()
