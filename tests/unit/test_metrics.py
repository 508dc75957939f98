"""Pure parts of the metrics: the latency histogram the pollers keep and the command tally."""

from __future__ import annotations

import math

import pytest

from gateway.actions import ACTIONS
from gateway.histogram import LATENCY_BOUNDS, Histogram
from gateway.metrics import CommandTally


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


def test_command_tally_counts_and_forwards() -> None:
    forwarded: list[dict[str, object]] = []
    tally = CommandTally(forwarded.append)
    known = ACTIONS[0]
    events = [
        {"meter": "main", "action": known, "outcome": "ok"},
        {"meter": "main", "action": known, "outcome": "ok"},
        {"meter": "main", "action": known, "outcome": "not_allowed"},
        {"meter": "main", "action": "no-such-action-1", "outcome": "unknown_action"},
        {"meter": "main", "action": "no-such-action-2", "outcome": "unknown_action"},
    ]
    for event in events:
        tally(event)
    assert forwarded == events
    assert tally.counts == {
        ("main", known, "ok"): 2,
        ("main", known, "not_allowed"): 1,
        ("main", "other", "unknown_action"): 2,  # strangers cannot grow the label set
    }


def test_command_tally_without_forward() -> None:
    tally = CommandTally()
    assert tally({"meter": "m", "action": "x", "outcome": "invalid"}) is None
    assert sum(tally.counts.values()) == 1
