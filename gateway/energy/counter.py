"""One register's import and export counters, and the rule for each step of its raw value.

A step takes the counter from the second it includes (``through``) to a later stored second
with that second's raw value. Its change ``delta`` (taken modulo 2^64 as a signed value, as
the meter's accumulators wrap) goes to ``imported`` when positive and to ``exported`` (as a
positive number) when negative:

- a step of one second is **fine**: exactly that second's change;
- a longer step (the meter had no finer rows for those seconds) is **coarse**: its whole net
  change goes to one side, by its sign -- the resolution lost is reported;
- a step whose change is implausible is a **discontinuity** (a cumulative reset, a rewound or
  restored database, a moved epoch): it adds nothing and the counter goes on from the new
  value. Implausible means ``|delta| > MARGIN * seconds * max(peak, recent, FLOOR)``, where
  ``peak`` is the largest rate the meter reported for the register (in raw counts per second)
  since the counter began and ``recent`` the rate of the step counted before: no physical
  flow moves the accumulator four times faster than the fastest rate seen, nor four times
  faster than a moment ago -- unless it stays below the floor (100 kW for a power register),
  so that history read long after (coarse rows of a busy afternoon, counted at night) is not
  mistaken. A step forced by a known discontinuity (the database epoch changed) is one too.

Counters are integers (raw counts, W·s for power) and only ever grow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Final

MARGIN: Final = 4  # how many times the fastest rate seen a step may move the accumulator
FLOOR: Final = 100_000  # raw counts per second always plausible (100 kW at 1 W a count)
_WRAP: Final = 1 << 64
_HALF: Final = 1 << 63


class Step(Enum):
    """What one step of a counter was."""

    FINE = "fine"
    COARSE = "coarse"
    DISCONTINUITY = "discontinuity"


def change(new: int, old: int) -> int:
    """``new - old`` of two raw accumulators, modulo 2^64 as a signed value (one wrap-around
    of the meter's int64 does no harm)."""
    d = (new - old) % _WRAP
    return d - _WRAP if d >= _HALF else d


def split(delta: int) -> tuple[int, int]:
    """A change as ``(imported, exported)``, both >= 0."""
    return (delta, 0) if delta >= 0 else (0, -delta)


def limit(seconds: int, peak: int) -> int:
    """The largest change of a plausible step of ``seconds`` (see the module docstring);
    ``peak``: the larger of the fastest rate seen and the rate of the step before."""
    return MARGIN * seconds * max(peak, FLOOR)


def peak_of(rate: float | None, quantum: float) -> int:
    """A reported rate as raw counts per second (rounded up); 0 for a missing one."""
    if rate is None or not math.isfinite(rate) or quantum <= 0:
        return 0
    return math.ceil(abs(rate) / quantum)


@dataclass(slots=True)
class Counter:
    """The counters of one register: everything up to ``through`` (a whole meter second)
    is counted, ``raw`` is the register's raw value at that second, ``peak`` the largest
    rate reported for it (raw counts per second)."""

    through: int
    raw: int
    imported: int = 0
    exported: int = 0
    peak: int = 0
    recent: int = 0  # the rate of the step counted last (raw counts per second)

    def note_rate(self, rate: float | None, quantum: float) -> None:
        """A rate the meter reported for the register (raises the plausibility bound)."""
        seen = peak_of(rate, quantum)
        if seen > self.peak:
            self.peak = seen

    def judge(self, second: int, raw: int, *, broken: bool = False) -> tuple[Step, int]:
        """What the step to ``second`` with ``raw`` would be, and its change (nothing is
        counted). ``broken``: a known discontinuity lies within it."""
        seconds = second - self.through
        delta = change(raw, self.raw)
        if broken or abs(delta) > limit(seconds, max(self.peak, self.recent)):
            return Step.DISCONTINUITY, delta
        return (Step.FINE if seconds == 1 else Step.COARSE), delta

    def step(self, second: int, raw: int, *, broken: bool = False) -> tuple[Step, int]:
        """Count the step to ``second`` (which must be after ``through``) with ``raw``;
        returns what it was and its change."""
        if second <= self.through:
            raise ValueError(f"second {second} is not after {self.through}")
        kind, delta = self.judge(second, raw, broken=broken)
        if kind is not Step.DISCONTINUITY:
            imported, exported = split(delta)
            self.imported += imported
            self.exported += exported
            self.recent = -(-abs(delta) // (second - self.through))  # rounded up
        self.through, self.raw = second, raw
        return kind, delta
