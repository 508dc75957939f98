"""Deterministic value functions of time: a sine around a base level.

``rate(t) = base + amp * sin(2*pi*t/period + phase)``; :meth:`Wave.integral` is its exact
closed-form integral, so a meter's accumulator can be predicted for any second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_TAU = 2.0 * math.pi


@dataclass(frozen=True, slots=True)
class Wave:
    """One quantity's rate as a function of Unix time."""

    base: float
    amp: float = 0.0
    period_s: float = 600.0
    phase: float = 0.0  # radians

    def __post_init__(self) -> None:
        if not self.period_s > 0:
            raise ValueError(f"period_s must be positive, not {self.period_s!r}")

    def _angle(self, t: float) -> float:
        return _TAU * (math.fmod(t, self.period_s) / self.period_s) + self.phase

    def rate(self, t: float) -> float:
        """The rate at time ``t``."""
        return self.base + self.amp * math.sin(self._angle(t))

    def integral(self, t0: float, t1: float) -> float:
        """The exact integral of :meth:`rate` from ``t0`` to ``t1``."""
        swing = self.amp * self.period_s / _TAU
        return self.base * (t1 - t0) + swing * (
            math.cos(self._angle(t0)) - math.cos(self._angle(t1)))

    def counts(self, origin: int, t: int, quantum: float) -> int:
        """The database count (in quanta) accumulated from second ``origin`` to ``t``."""
        return round(self.integral(origin, t) / quantum)

    def shifted(self, phase: float) -> Wave:
        """The same wave with ``phase`` added (for varied fleets)."""
        return Wave(self.base, self.amp, self.period_s, self.phase + phase)
