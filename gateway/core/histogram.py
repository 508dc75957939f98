"""A fixed-bucket histogram of durations, kept by the component that measures them and read
by the metrics endpoint at scrape time (no metrics library in the hot path)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Final

# Upper bounds in seconds (Prometheus' ``le``); a poll of a meter on a LAN takes 10-300 ms.
LATENCY_BOUNDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts of observations per bucket (``value <= bound``), their sum and number."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS) -> None:
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be distinct and ascending")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` for every bound, then ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self._counts, strict=True):
            running += n
            out.append((bound, running))
        return out
