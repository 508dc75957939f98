"""The register image of one unit: bytes per contiguous run, updated from the meter's data.

Encoders are built once per layout, so encoding a reading is a dictionary lookup and a
``pack`` per mapped value. A codec and its writer depend only on the point's type, word order,
scale and length, so :class:`Codecs` builds each kind once for every unit of an output (at
200 meters, one codec and writer per point had been 5 MB of the heap).

A reading is encoded when a read first needs it, not when it arrives: a meter polled every
second whose unit is read less often (or never) costs no encoding for the readings nobody
reads, and a master that reads every reading pays what an eager image paid. A read never
waits for anything: it encodes what is new, then slices the bytes (refreshing the age field
first, which is computed at read time).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Final

from gateway.modbus.codec import Codec
from gateway.modbus.layout import Layout
from gateway.modbus.mapping import METER_SOURCES, Point
from gateway.model import Availability, Identity, Reading, RegisterValue

ILLEGAL_ADDRESS: Final = 0x02
TARGET_FAILED: Final = 0x0B

_UNIT_PREFIX: Final = {"k": 1000.0, "M": 1_000_000.0}
_RATE, _CUMULATIVE, _RAW, _IMPORT, _EXPORT, _IMPORT_RATE, _EXPORT_RATE = range(7)
_KINDS: Final = {"rate": _RATE, "cumulative": _CUMULATIVE, "raw": _RAW, "import": _IMPORT,
                 "export": _EXPORT, "import_rate": _IMPORT_RATE, "export_rate": _EXPORT_RATE}


def unit_factor(have: str, want: str) -> float | None:
    """How to turn a value in ``have`` into ``want`` (kWh -> Wh: 1000); None if unknown."""
    if not want or have == want:
        return 1.0
    for prefix, factor in _UNIT_PREFIX.items():
        if have == prefix + want:
            return factor
        if want == prefix + have:
            return 1.0 / factor
    return None


Writer = Callable[[bytearray, int, int | float | str | None], None]


class Codecs:
    """One codec and its writer per kind of point (type, word order, scale, length), shared
    by every image they are given to (codecs and writers keep no state of their own)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str, float, int], tuple[Codec, Writer]] = {}

    def of(self, point: Point) -> tuple[Codec, Writer]:
        key = (point.type, point.word_order, point.scale, point.length)
        made = self._made.get(key)
        if made is None:
            codec = point.codec()
            made = self._made[key] = (codec, codec.writer())
        return made


class _Slot:
    """Where one point's bytes live: its run buffer and byte offset."""

    __slots__ = ("_factor", "_unit", "buf", "codec", "kind", "off", "point", "write")

    def __init__(self, point: Point, buf: bytearray, off: int, codecs: Codecs) -> None:
        self.point = point
        self.codec, self.write = codecs.of(point)
        self.buf = buf
        self.off = off
        self.kind = _KINDS.get(point.source, -1)
        self._unit: str | None = None  # the register unit last converted from
        self._factor: float | None = 1.0

    def put(self, value: int | float | str | None) -> None:
        self.write(self.buf, self.off, value)

    def put_register(self, reg: RegisterValue) -> None:
        kind = self.kind
        if kind == _RAW:
            self.write(self.buf, self.off, reg.raw)
            return
        value: float | None
        if kind == _RATE:
            value, unit = reg.rate, reg.unit
        elif kind == _CUMULATIVE:
            value, unit = reg.cumulative, reg.cumulative_unit
        elif kind in (_IMPORT, _EXPORT):
            energy = reg.energy  # the counters, where they exist (docs/ENERGY.md)
            if energy is None:
                self.write(self.buf, self.off, None)
                return
            value = energy.import_value if kind == _IMPORT else energy.export_value
            unit = energy.unit
        else:  # the rate in one direction, 0 in the other
            rate = reg.rate
            value = None if rate is None else max(0.0, rate if kind == _IMPORT_RATE else -rate)
            unit = reg.unit
        if unit != self._unit:
            self._unit = unit
            self._factor = unit_factor(unit, self.point.unit)
        factor = self._factor
        if value is not None and factor is not None:
            self.write(self.buf, self.off, value if factor == 1.0 else value * factor)
        else:
            self.write(self.buf, self.off, None)


class UnitImage:
    """One unit's registers. ``online`` gates everything but the status points."""

    def __init__(self, unit_id: int, layout: Layout, clock: Callable[[], float],
                 codecs: Codecs | None = None) -> None:
        self.unit_id = unit_id
        self._codecs = codecs or Codecs()
        self.layout = layout
        self._clock = clock
        self._starts = [a for a, _ in layout.runs]
        self._ends = [b for _, b in layout.runs]
        self._bufs = [bytearray(2 * (b - a + 1)) for a, b in layout.runs]
        self._gated = [bytearray(b - a + 1) for a, b in layout.runs]  # 1: needs the meter
        self._by_register: dict[str, list[_Slot]] = {}
        self._meter_slots: list[_Slot] = []
        self._status: list[_Slot] = []
        self._identity: list[_Slot] = []
        self._age: list[list[_Slot]] = [[] for _ in layout.runs]
        self.online = False
        self.reading: Reading | None = None
        self.identity: Identity | None = None
        self.availability: Availability | None = None
        self._names: tuple[str, ...] = ()
        self._pending: Reading | None = None  # applied, not yet encoded
        self._status_stale = False
        for p in layout.points:
            self._place(p)
        self._write_status()

    def _place(self, p: Point) -> None:
        run = bisect_right(self._starts, p.address) - 1
        slot = _Slot(p, self._bufs[run], 2 * (p.address - self._starts[run]), self._codecs)
        if p.source.startswith("status:"):
            self._status.append(slot)
            if p.source == "status:age":
                self._age[run].append(slot)
        else:
            lo = p.address - self._starts[run]
            self._gated[run][lo:lo + slot.codec.size] = b"\1" * slot.codec.size
        if p.source in METER_SOURCES:
            self._meter_slots.append(slot)
            if p.register is not None:
                self._by_register.setdefault(p.register, []).append(slot)
            slot.put(None)
        elif p.source.startswith("identity:"):
            self._identity.append(slot)
        elif p.source == "const":
            slot.put(p.value)
        elif p.source == "unit_id":
            slot.put(self.unit_id)
        else:  # "none"; status points are written once all are placed
            slot.put(None)

    # -- updates (from the sink methods) ------------------------------------------------------

    def apply_reading(self, reading: Reading) -> None:
        self.reading = reading
        self.online = True
        self._pending = reading
        self._status_stale = True

    def _encode(self, reading: Reading) -> None:
        """Write ``reading``'s values into the buffers."""
        self._pending = None
        names = tuple(r.name for r in reading.registers)
        if names != self._names:  # the register set changed: absent ones read "not available"
            self._names = names
            for slot in self._meter_slots:
                slot.put(None)
        by_register = self._by_register
        for reg in reading.registers:
            slots = by_register.get(reg.name)
            if slots is not None:
                for slot in slots:
                    slot.put_register(reg)

    def apply_availability(self, availability: Availability) -> None:
        self.availability = availability
        self.online = availability.online
        self._status_stale = True

    def apply_identity(self, identity: Identity) -> None:
        self.identity = identity
        for slot in self._identity:
            slot.put(getattr(identity, slot.point.source.partition(":")[2], None))

    def replay(self, other: UnitImage) -> None:
        """Take over ``other``'s state (after the layout grew by new auto slots)."""
        if other.identity is not None:
            self.apply_identity(other.identity)
        if other.reading is not None:
            self.apply_reading(other.reading)
        if other.availability is not None:
            self.apply_availability(other.availability)
        self.online = other.online
        self._status_stale = True

    # -- reads (from the server) --------------------------------------------------------------

    def read(self, address: int, count: int) -> bytes | int:
        """``count`` registers from ``address`` as wire bytes, or a Modbus exception code."""
        run = bisect_right(self._starts, address) - 1
        if run < 0 or address + count - 1 > self._ends[run]:
            return ILLEGAL_ADDRESS
        if self._pending is not None:
            self._encode(self._pending)
        if self._status_stale:
            self._write_status()
        lo = address - self._starts[run]
        if not self.online and self._gated[run].find(1, lo, lo + count) >= 0:
            return TARGET_FAILED
        for slot in self._age[run]:
            slot.put(self._status_value(slot))
        return bytes(self._bufs[run][2 * lo:2 * (lo + count)])

    def _write_status(self) -> None:
        self._status_stale = False
        for slot in self._status:
            slot.put(self._status_value(slot))

    def _status_value(self, slot: _Slot) -> int | float | None:
        field = slot.point.source[7:]
        if field == "online":
            return int(self.online)
        if field == "failed_polls":
            return self.availability.failed_polls if self.availability else 0
        if self.reading is None:
            return None
        ts = self.reading.ts
        integer = slot.codec.dtype.kind == "int"
        if field == "age":
            age = max(0.0, self._clock() - ts)
            return math.floor(age) if integer else age
        if field == "timestamp":
            return math.floor(ts) if integer else ts
        micros = round((ts - math.floor(ts)) * 1e6)  # timestamp_us
        return min(micros, 999_999)
