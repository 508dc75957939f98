"""One register's counters and the rule for a step: fine, coarse, discontinuity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.energy import FLOOR, MARGIN, Counter, Step, change, limit, split


def test_a_positive_change_is_imported_a_negative_one_exported() -> None:
    c = Counter(through=100, raw=5_000)
    assert c.step(101, 5_700) == (Step.FINE, 700)
    assert c.step(102, 5_300) == (Step.FINE, -400)
    assert (c.imported, c.exported, c.through, c.raw) == (700, 400, 102, 5_300)


def test_a_step_over_several_seconds_is_coarse_and_goes_to_one_side_by_its_net_sign() -> None:
    c = Counter(through=0, raw=0, peak=2_000)
    assert c.step(60, -30_000) == (Step.COARSE, -30_000)
    assert (c.imported, c.exported) == (0, 30_000)


def test_an_implausible_change_adds_nothing_and_the_counter_goes_on_from_the_new_value() -> None:
    c = Counter(through=10, raw=9_000_000_000, imported=42, exported=7, peak=3_000)
    # a cumulative reset: the accumulator drops to almost nothing
    assert c.step(11, 2_500)[0] is Step.DISCONTINUITY
    assert (c.imported, c.exported, c.through, c.raw) == (42, 7, 11, 2_500)
    assert c.step(12, 4_500) == (Step.FINE, 2_000)
    assert c.imported == 2_042


def test_the_plausibility_bound_is_four_times_the_fastest_rate_seen_per_second() -> None:
    c = Counter(through=0, raw=0, peak=250_000)
    bound = MARGIN * 250_000 * 3
    assert limit(3, 250_000) == bound
    assert c.judge(3, bound)[0] is Step.COARSE
    assert c.judge(3, bound + 1)[0] is Step.DISCONTINUITY
    assert c.judge(3, -bound - 1)[0] is Step.DISCONTINUITY


def test_a_register_with_no_rate_seen_is_bounded_by_the_floor() -> None:
    c = Counter(through=0, raw=0)
    assert c.judge(1, MARGIN * FLOOR)[0] is Step.FINE
    assert c.judge(1, MARGIN * FLOOR + 1)[0] is Step.DISCONTINUITY


def test_rates_raise_the_bound_in_raw_counts_per_second() -> None:
    c = Counter(through=0, raw=0)
    c.note_rate(-12.5, 0.001)  # 12.5 A at a quantum of 1 mA: 12 500 counts a second
    assert c.peak == 12_500
    c.note_rate(3.0, 0.001)
    c.note_rate(None, 0.001)
    c.note_rate(float("nan"), 0.001)
    assert c.peak == 12_500


def test_a_step_four_times_faster_than_the_one_before_and_the_peak_is_implausible() -> None:
    c = Counter(through=0, raw=0, peak=1_000)
    assert c.step(60, 60 * 300_000)[0] is Step.COARSE  # 300 kW: 3 x the floor
    assert c.recent == 300_000
    assert c.judge(61, 60 * 300_000 + 4 * 300_000)[0] is Step.FINE
    assert c.judge(61, 60 * 300_000 + 4 * 300_000 + 1)[0] is Step.DISCONTINUITY
    # a glitch up and back down: neither step is counted
    c = Counter(through=0, raw=0, peak=2_000)
    assert c.step(1, 10**8)[0] is Step.DISCONTINUITY
    assert c.step(2, 1_500)[0] is Step.DISCONTINUITY
    assert (c.imported, c.exported) == (0, 0)


def test_a_known_discontinuity_skips_the_step_whatever_its_size() -> None:
    c = Counter(through=0, raw=0, peak=1_000_000)
    assert c.step(1, 5, broken=True)[0] is Step.DISCONTINUITY
    assert (c.imported, c.exported, c.raw) == (0, 0, 5)


def test_one_wrap_around_of_the_int64_accumulator_is_a_small_change() -> None:
    top = (1 << 63) - 1
    assert change(-(1 << 63) + 99, top) == 100
    c = Counter(through=0, raw=top)
    assert c.step(1, -(1 << 63) + 99) == (Step.FINE, 100)


def test_a_step_must_move_forward() -> None:
    c = Counter(through=5, raw=0)
    with pytest.raises(ValueError, match="not after"):
        c.step(5, 10)


@given(st.lists(st.integers(-50_000, 50_000), max_size=200))
def test_counters_never_decrease_and_sum_the_positive_and_negative_changes(
        changes: list[int]) -> None:
    c = Counter(through=0, raw=123, peak=50_000)
    raw, imported, exported = 123, 0, 0
    for second, delta in enumerate(changes, start=1):
        before = (c.imported, c.exported)
        raw += delta
        c.step(second, raw)
        assert c.imported >= before[0]
        assert c.exported >= before[1]
        imported += max(0, delta)
        exported += max(0, -delta)
    assert (c.imported, c.exported) == (imported, exported)
    assert c.imported - c.exported == raw - 123


@given(st.integers(-(10**12), 10**12))
def test_split_is_nonnegative_and_adds_back_up(delta: int) -> None:
    imported, exported = split(delta)
    assert imported >= 0
    assert exported >= 0
    assert imported - exported == delta
    assert imported == 0 or exported == 0
