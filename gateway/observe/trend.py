"""PowerTrend: each meter's main power registers over the last minutes, in memory.

A hub sink. Per meter it follows at most :data:`MAX_REGISTERS` power registers (type ``P``;
the virtual ones first, as they are the site's totals such as ``use`` and ``gen``, then the
physical ones in the meter's order) and keeps the average rate of each ``step_s`` bucket of
the meter's time for the last ``window_s`` (by default 120 buckets of 5 s: ten minutes).
The buckets live in fixed ``array`` rings, so a meter costs a few KB however long the
gateway runs, and a reading costs a few additions. The means are kept as 32-bit floats (about
seven significant digits, more than a chart shows; half the memory of a 64-bit ring), the
bucket start times as 64-bit ones. A changed register set starts afresh.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from gateway.model import Availability, Identity, Reading, RegisterInfo

MAX_REGISTERS: Final = 4
POWER: Final = "P"


@dataclass(slots=True)
class _Ring:
    names: tuple[str, ...]
    slots: int
    at: tuple[int, ...] = ()  # where each name sits in the latest reading's registers
    starts: array[float] = field(default_factory=lambda: array("d"))  # bucket start times
    means: list[array[float]] = field(default_factory=list)
    head: int = 0  # the next slot to fill
    filled: int = 0
    bucket: float = math.nan  # start of the bucket being summed
    sums: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.starts = array("d", [math.nan] * self.slots)
        self.means = [array("f", [math.nan] * self.slots) for _ in self.names]
        self.sums = [0.0] * len(self.names)
        self.counts = [0] * len(self.names)

    def close_bucket(self) -> None:
        if math.isnan(self.bucket):
            return
        self.starts[self.head] = self.bucket
        for i, mean in enumerate(self.means):
            mean[self.head] = self.sums[i] / self.counts[i] if self.counts[i] else math.nan
            self.sums[i], self.counts[i] = 0.0, 0
        self.head = (self.head + 1) % self.slots
        self.filled = min(self.filled + 1, self.slots)


class PowerTrend:
    """The recent power of every meter (a hub sink; the status page reads :meth:`series`)."""

    def __init__(self, window_s: float = 600.0, step_s: float = 5.0) -> None:
        self.step_s = step_s
        self.slots = max(2, math.ceil(window_s / step_s))
        self._virtual: dict[str, frozenset[str]] = {}
        self._rings: dict[str, _Ring] = {}

    def series(self, meter: str) -> list[tuple[str, list[tuple[float, float]]]]:
        """Each followed register's (bucket start, mean rate in W) points within the window
        before the newest reading, oldest first, the bucket in progress last."""
        ring = self._rings.get(meter)
        if ring is None:
            return []
        order = [(ring.head - ring.filled + k) % ring.slots for k in range(ring.filled)]
        oldest = ring.bucket - (ring.slots - 1) * self.step_s
        out = []
        for i, name in enumerate(ring.names):
            points = [(ring.starts[j], ring.means[i][j]) for j in order
                      if math.isfinite(ring.means[i][j]) and ring.starts[j] >= oldest]
            if ring.counts[i]:
                points.append((ring.bucket, ring.sums[i] / ring.counts[i]))
            out.append((name, points))
        return out

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the meters not in ``keep`` (a configuration reload)."""
        wanted = set(keep)
        for meter in [m for m in self._rings if m not in wanted]:
            del self._rings[meter]

    # -- sink -------------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        pass

    def on_availability(self, availability: Availability) -> None:
        pass

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        self._virtual[meter] = frozenset(r.name for r in registers if r.virtual)

    def on_reading(self, reading: Reading) -> None:
        ring = self._rings.get(reading.meter)
        values = reading.registers
        if ring is None or not _still(ring, reading):
            ring = self._ring(reading)
            if ring is None:
                return
        bucket = math.floor(reading.ts / self.step_s) * self.step_s
        if bucket != ring.bucket:
            if not math.isnan(ring.bucket) and bucket < ring.bucket:
                fresh = self._ring(reading)  # the meter's clock went back: start afresh
                if fresh is None:
                    return
                ring = fresh
            ring.close_bucket()
            ring.bucket = bucket
        for i, at in enumerate(ring.at):
            rate = values[at].rate
            if rate is not None and math.isfinite(rate):
                ring.sums[i] += rate
                ring.counts[i] += 1

    def _ring(self, reading: Reading) -> _Ring | None:
        virtual = self._virtual.get(reading.meter, frozenset())
        power = [v.name for v in reading.registers if v.type_code == POWER]
        names = tuple(sorted(power, key=lambda n: n not in virtual)[:MAX_REGISTERS])
        if not names:
            self._rings.pop(reading.meter, None)
            return None
        ring = _Ring(names, self.slots)
        _locate(ring, reading)
        self._rings[reading.meter] = ring
        return ring


def _locate(ring: _Ring, reading: Reading) -> None:
    index = {v.name: i for i, v in enumerate(reading.registers)}
    ring.at = tuple(index[n] for n in ring.names)


def _still(ring: _Ring, reading: Reading) -> bool:
    """Whether the ring's registers are where they were (else look them up again, or
    start a new ring when one is gone)."""
    values = reading.registers
    if all(at < len(values) and values[at].name == name
           for at, name in zip(ring.at, ring.names, strict=True)):
        return True
    present = {v.name for v in values}
    if not all(n in present for n in ring.names):
        return False
    _locate(ring, reading)
    return True
