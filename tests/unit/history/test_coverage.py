"""The gap tracker: which meter seconds are on the broker, and the oldest gap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.history.coverage import Coverage


def test_the_first_confirmation_sets_the_watermark_without_a_gap() -> None:
    c = Coverage(step=1)
    assert c.until is None
    assert c.gap() is None
    c.confirm(1000)
    assert c.until == 1000
    assert c.gap() is None


def test_consecutive_seconds_leave_no_gap() -> None:
    c = Coverage(step=1, until=99)
    for t in range(100, 110):
        c.confirm(t)
    assert (c.until, c.gap(), c.intervals) == (109, None, ())


def test_a_jump_is_a_gap_and_filling_it_absorbs_what_lies_beyond() -> None:
    c = Coverage(step=1, until=100)
    c.confirm(105)
    c.confirm(106)
    assert c.gap() == (100, 105)  # rows 101..104 are wanted
    assert c.until == 100
    c.filled(102)
    assert c.gap() == (102, 105)
    c.filled(104)
    assert (c.until, c.gap(), c.intervals) == (106, None, ())


def test_a_repeated_second_is_no_gap_and_an_old_one_changes_nothing() -> None:
    c = Coverage(step=1, until=100)
    c.confirm(101)
    c.confirm(101)
    c.confirm(50)
    assert (c.until, c.gap()) == (101, None)


def test_late_confirmations_inside_a_gap_split_and_close_it() -> None:
    c = Coverage(step=1, until=100)
    c.confirm(110)
    c.confirm(103)  # a state queued while the broker was away, acknowledged late
    assert c.intervals == ((103, 103), (110, 110))
    assert c.gap() == (100, 103)
    c.confirm(102)
    c.confirm(101)
    assert c.gap() == (103, 110)
    for t in range(104, 110):
        c.confirm(t)
    assert (c.until, c.gap()) == (110, None)


@pytest.mark.parametrize(("second", "gap"), [(160, None), (161, (100, 161))])
def test_with_a_minute_step_only_distances_above_it_are_gaps(
        second: int, gap: tuple[int, int] | None) -> None:
    c = Coverage(step=60, until=100)
    c.confirm(second)
    assert c.gap() == gap


def test_giving_up_moves_the_watermark_to_the_look_back_limit() -> None:
    c = Coverage(step=1, until=1000)
    c.confirm(5000)
    assert c.give_up(600) == 5000 - 600 - 1000
    assert c.gap() == (4400, 5000)
    assert c.give_up(600) == 0


def test_filling_past_intervals_swallows_them() -> None:
    c = Coverage(step=1, until=0)
    for t in (10, 20, 30):
        c.confirm(t)
    c.filled(25)
    assert c.gap() == (25, 30)
    assert c.intervals == ((30, 30),)


def test_a_step_below_one_second_is_refused() -> None:
    with pytest.raises(ValueError, match="step"):
        Coverage(step=0)


@given(st.integers(1, 5), st.lists(st.integers(0, 60), min_size=1, max_size=40))
def test_matches_a_plain_model(step: int, times: list[int]) -> None:
    """The watermark is how far the covered times reach from the first one without a step
    longer than ``step``; the gap runs from there to the next covered time."""
    c = Coverage(step)
    for t in times:
        c.confirm(t)
    base = times[0]
    later = sorted({t for t in times if t >= base})
    until = base
    for t in later:
        if t - until > step:
            break
        until = max(until, t)
    assert c.until == until
    beyond = [t for t in later if t > until]
    assert c.gap() == ((until, beyond[0]) if beyond else None)
    covered = {t for a, b in c.intervals for t in range(a, b + 1)}
    assert set(beyond) <= covered
    assert c.newest == max(later)


def test_ranges_saved_beyond_the_watermark_are_restored_sorted_and_merged() -> None:
    c = Coverage(step=1, until=100, ahead=[(121, 125), (110, 120), (90, 95), (130, 129)])
    assert c.until == 100
    assert c.intervals == ((110, 125),)  # merged; one behind the watermark, one inverted: gone
    assert c.gap() == (100, 110)
    c.filled(109)
    assert (c.until, c.intervals) == (125, ())
    touching = Coverage(step=1, until=100, ahead=[(101, 105), (200, 210)])
    assert (touching.until, touching.intervals) == (105, ((200, 210),))
    assert Coverage(step=1, ahead=[(5, 9)]).intervals == ()  # no watermark: nothing ahead
