"""A meter's database for the counters' unit tests (no tests here): per-second raw values of
a few registers, stored as 1-second rows from ``fine_from`` on and as minute rows before,
answering ``time=start:1:end&max-rows=N`` the way egauge-webapi §2.2 describes it: times
generated from ``end`` backwards, each rounded down to the stored row at or before it, each
row once, the youngest ``N`` kept."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.errors import MeterUnavailable
from gateway.model import Reading, RegisterValue

NAMES = ("Grid", "Solar")


class Database:
    def __init__(self, changes: Mapping[str, Sequence[int]], *, start: int = 1_000_000,
                 fine_from: int | None = None, epoch: str = "999000") -> None:
        """``changes[name][k]`` is the change of the second ``start + 1 + k``; the raw value
        at ``start`` is 10**9 (so values are relative to some epoch long ago)."""
        self.start = start
        length = min(len(c) for c in changes.values())
        self.head = start + length
        self.fine_from = start if fine_from is None else fine_from
        self.raws = {name: [10**9, *itertools.accumulate(c[:length], initial=10**9)][1:]
                     for name, c in changes.items()}
        self.epoch = epoch
        self.calls: list[tuple[float, float, float, int | None]] = []
        self.down = False

    def raw(self, name: str, t: int) -> int:
        return self.raws[name][t - self.start]

    def change(self, name: str, t: int) -> int:
        return self.raw(name, t) - self.raw(name, t - 1)

    def stored(self, t: int) -> bool:
        return self.start <= t <= self.head and (t >= self.fine_from or t % 60 == 0)

    def row_at(self, t: int) -> int | None:
        while t >= self.start:
            if self.stored(t):
                return t
            t -= 1
        return None

    def reading(self, t: int, meter: str = "main") -> Reading:
        """The live reading of second ``t``: each register's rate is that second's change."""
        values = tuple(RegisterValue(n, "P", "W", float(self.change(n, t)),
                                     self.raw(n, t) / 3.6e6, "kWh", self.raw(n, t))
                       for n in self.raws)
        return Reading(meter, t + 0.00042, values, row=t)

    async def history(self, start: float, step: float, end: float,
                      max_rows: int | None = None) -> list[tuple[float, dict[str, int]]]:
        self.calls.append((start, step, end, max_rows))
        if self.down:
            raise MeterUnavailable("main", "connection refused")
        rows: list[int] = []
        t = int(end)
        while t >= start and (max_rows is None or len(rows) < max_rows):
            row = self.row_at(t)
            if row is None:
                break
            if not rows or rows[-1] != row:
                rows.append(row)
            t -= ((t - row) // int(step) + 1) * int(step)  # the next time of another row
        return [(float(r), {n: self.raw(n, r) for n in self.raws}) for r in reversed(rows)]

    async def get_config(self, path: str) -> tuple[Any, str | None]:
        assert path == "/db/epoch"
        return self.epoch, None


def expected(db: Database, name: str, seconds: Sequence[int]) -> tuple[int, int]:
    """Import and export between the first and the last of ``seconds`` (the live polls) by
    the definition: along every second the database stores and every second polled, each
    step's change to the side of its sign."""
    first, last = seconds[0], seconds[-1]
    points = sorted({t for t in range(first, last + 1) if db.stored(t)} | set(seconds))
    points = [t for t in points if first <= t <= last]
    imported = exported = 0
    for a, b in itertools.pairwise(points):
        delta = db.raw(name, b) - db.raw(name, a)
        imported += max(0, delta)
        exported += max(0, -delta)
    return imported, exported
