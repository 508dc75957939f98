"""What a simulated quantity does over time, and how the meter's database counts it.

A signal has a ``rate(t)`` (the instantaneous value), an exact ``integral(t0, t1)`` and
``counts(origin, t, quantum)``: the database accumulator in quanta from second ``origin`` to
second ``t``. The meter reports for each second ``T`` the change ``counts(T) - counts(T-1)``
(an exact integer) and a rate of that many quanta, so the per-second rate is the quantised
average over the second, as egauge-webapi §2.4 describes (``round(rate/quantum)`` per second).

:class:`Wave` (``wave.py``) is a sine around a base; :class:`DayCurve` is a daylight bell
(zero at night, exactly: its count does not move between sunset and sunrise);
:class:`Mix` is a weighted sum. A Mix whose weights are all +1/-1 counts as the sum of its
terms' counts, so ``Grid = Load - Solar`` holds to the count, every second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from gateway.simulator.wave import Wave

__all__ = ["DayCurve", "Mix", "Signal", "Wave", "decimals", "quantised"]


class Signal(Protocol):
    """A quantity as a function of Unix time (seconds)."""

    def rate(self, t: float) -> float: ...
    def integral(self, t0: float, t1: float) -> float: ...
    def counts(self, origin: int, t: int, quantum: float) -> int: ...


@dataclass(frozen=True, slots=True)
class DayCurve:
    """A daylight bell: ``peak * sin(pi * (f - rise) / (set - rise))`` while the fraction
    ``f`` of the day (``t mod period_s``) lies between ``rise`` and ``set``, zero otherwise.

    ``period_s`` is a whole number of seconds (a short one makes a fast "day" for tests);
    noon is at ``(rise + set) / 2`` of each period, midnight at its start (UTC).
    """

    peak: float
    period_s: int = 86400
    rise: float = 0.25
    set: float = 0.75

    def __post_init__(self) -> None:
        if not isinstance(self.period_s, int) or self.period_s < 2:
            raise ValueError(f"period_s must be a whole number >= 2, not {self.period_s!r}")
        if not 0.0 <= self.rise < self.set <= 1.0:
            raise ValueError("need 0 <= rise < set <= 1")
        if self.peak < 0:
            raise ValueError("peak must not be negative")

    @property
    def _daylight_s(self) -> float:
        return (self.set - self.rise) * self.period_s

    def rate(self, t: float) -> float:
        s = math.fmod(t, self.period_s)
        s = s + self.period_s if s < 0 else s
        x = (s - self.rise * self.period_s) / self._daylight_s
        return self.peak * math.sin(math.pi * x) if 0.0 < x < 1.0 else 0.0

    def _partial(self, s: float) -> float:
        """The integral from the start of a period to ``s`` seconds into it."""
        x = min(1.0, max(0.0, (s - self.rise * self.period_s) / self._daylight_s))
        half = math.sin(math.pi * x / 2.0)
        return self.peak * self._daylight_s / math.pi * 2.0 * half * half  # 1 - cos, exactly

    def integral(self, t0: float, t1: float) -> float:
        def upto(t: float) -> float:
            days = math.floor(t / self.period_s)
            return days * self._partial(self.period_s) + self._partial(t - days * self.period_s)

        return upto(t1) - upto(t0)

    def counts(self, origin: int, t: int, quantum: float) -> int:
        """Whole periods count their rounded total, the rest of a period its rounded part,
        so the count is monotone and stands still at night."""
        whole = round(self._partial(self.period_s) / quantum)

        def upto(second: int) -> int:
            days, s = divmod(second, self.period_s)
            return days * whole + round(self._partial(s) / quantum)

        return upto(t) - upto(origin)


@dataclass(frozen=True, slots=True)
class Mix:
    """``sum(weight * signal)`` over ``terms``."""

    terms: tuple[tuple[float, Signal], ...]

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("a Mix needs at least one term")

    def rate(self, t: float) -> float:
        return sum(w * s.rate(t) for w, s in self.terms)

    def integral(self, t0: float, t1: float) -> float:
        return sum(w * s.integral(t0, t1) for w, s in self.terms)

    def counts(self, origin: int, t: int, quantum: float) -> int:
        if all(w in (1, -1) for w, _ in self.terms):
            return sum(int(w) * s.counts(origin, t, quantum) for w, s in self.terms)
        return round(self.integral(origin, t) / quantum)


def decimals(quantum: float) -> int | None:
    """How many decimals a multiple of ``quantum`` has when it is a power of ten below 1."""
    if 0 < quantum < 1:
        digits = round(-math.log10(quantum))
        if math.isclose(quantum, 10.0**-digits, rel_tol=1e-12):
            return digits
    return None


def quantised(count: int, quantum: float) -> float:
    """``count`` quanta as a float, written with the quantum's decimals (0.001 -> 3)."""
    places = decimals(quantum)
    value = count * quantum
    return round(value, places) if places is not None else value
