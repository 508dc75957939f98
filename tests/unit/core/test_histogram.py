"""The latency histogram the pollers keep and the metrics endpoint reads."""

from __future__ import annotations

import math

import pytest

from gateway.core.histogram import LATENCY_BOUNDS, Histogram


def test_histogram_counts_cumulatively_with_le_semantics() -> None:
    h = Histogram((0.1, 0.5, 1.0))
    for v in (0.05, 0.1, 0.3, 0.5, 0.7, 3.0):
        h.observe(v)
    # a value equal to a bound belongs to that bound's bucket (Prometheus "le")
    assert h.cumulative() == [(0.1, 2), (0.5, 4), (1.0, 5), (math.inf, 6)]
    assert h.count == 6
    assert h.sum == pytest.approx(4.65)


def test_histogram_defaults_and_bad_bounds() -> None:
    h = Histogram()
    assert h.bounds == LATENCY_BOUNDS
    assert h.cumulative()[-1] == (math.inf, 0)
    with pytest.raises(ValueError, match="ascending"):
        Histogram((1.0, 0.5))
    with pytest.raises(ValueError, match="ascending"):
        Histogram(())
