"""RecentRows: a window inside the dense run kept is answered as the meter would answer it."""

from __future__ import annotations

import pytest

from gateway.meter.recent import RecentRows, Row


def row(ts: int) -> Row:
    return (float(ts), {"Grid": 1000 * ts, "use": -ts})


def run(first: int, last: int) -> list[Row]:
    return [row(ts) for ts in range(first, last + 1)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("start", "end", "max_rows"), [
    (10, 12, None), (10, 20, None), (13, 13, None), (11, 19, 2), (10, 20, 600), (15, 18, 0),
])
def test_a_window_inside_the_run_gets_the_meters_rows(start: int, end: int,
                                                      max_rows: int | None) -> None:
    memo = RecentRows(max_rows=64)
    memo.remember(run(10, 20), generation=1)
    wanted = [row(ts) for ts in range(start, end + 1)]  # what time=start:1:end holds
    if max_rows is not None:  # the meter keeps the newest max_rows of them
        wanted = wanted[len(wanted) - max_rows:] if max_rows else []
    assert memo.lookup(start, end, max_rows, generation=1) == wanted
    assert memo.hits == 1


@pytest.mark.parametrize(("start", "end"), [(9, 12), (12, 21), (5, 25), (14, 13)])
def test_a_window_reaching_outside_the_run_is_asked_of_the_meter(start: int, end: int) -> None:
    memo = RecentRows(max_rows=64)
    memo.remember(run(10, 20), generation=1)
    assert memo.lookup(start, end, None, generation=1) is None
    assert memo.hits == 0


def test_rows_with_a_hole_or_coarser_spacing_are_not_kept() -> None:
    memo = RecentRows(max_rows=64)
    memo.remember([row(10), row(11), row(13)], generation=1)
    assert memo.lookup(10, 11, None, generation=1) is None
    memo.remember([row(60), row(120), row(180)], generation=1)
    assert memo.lookup(60, 60, None, generation=1) is None
    memo.remember([(10.5, {"Grid": 1}), (11.5, {"Grid": 2})], generation=1)
    assert memo.lookup(11, 11, None, generation=1) is None


def test_rows_are_forgotten_after_keep_s_and_after_a_new_login() -> None:
    clock = Clock()
    memo = RecentRows(keep_s=5.0, max_rows=64, clock=clock)
    memo.remember(run(10, 20), generation=1)
    clock.now += 5.0
    assert memo.lookup(12, 14, None, generation=1) is not None
    assert memo.lookup(12, 14, None, generation=2) is None  # logged in again: a reboot?
    clock.now += 0.1
    assert memo.lookup(12, 14, None, generation=1) is None


def test_touching_replies_join_and_a_distant_one_replaces_them() -> None:
    memo = RecentRows(max_rows=64)
    memo.remember(run(10, 12), generation=1)
    memo.remember(run(13, 15), generation=1)  # the next seconds: one run 10..15
    memo.remember(run(14, 16), generation=1)  # overlapping: 10..16
    assert memo.lookup(10, 16, None, generation=1) == run(10, 16)
    memo.remember(run(30, 31), generation=1)
    assert memo.lookup(10, 12, None, generation=1) is None
    assert memo.lookup(30, 31, None, generation=1) == run(30, 31)


def test_a_reply_of_another_login_is_not_joined_to_the_run() -> None:
    memo = RecentRows(max_rows=64)
    memo.remember(run(10, 12), generation=1)
    memo.remember(run(13, 14), generation=2)
    assert memo.lookup(10, 14, None, generation=2) is None
    assert memo.lookup(13, 14, None, generation=2) == run(13, 14)


def test_only_the_newest_max_rows_are_kept() -> None:
    memo = RecentRows(max_rows=8)
    memo.remember(run(1, 20), generation=1)
    assert memo.lookup(12, 20, None, generation=1) is None
    assert memo.lookup(13, 20, None, generation=1) == run(13, 20)


def test_rows_of_two_register_sets_come_back_as_they_were_given() -> None:
    memo = RecentRows(max_rows=64)
    first = run(10, 12)
    second = [(float(ts), {"use": -ts, "Grid": 1000 * ts, "Solar": 5}) for ts in (13, 14)]
    memo.remember(first, generation=1)
    memo.remember(second, generation=1)  # a register added, the order changed
    answer = memo.lookup(10, 14, None, generation=1)
    assert answer == first + second
    assert answer is not None
    assert [list(raws) for _, raws in answer] == [list(raws) for _, raws in first + second]
