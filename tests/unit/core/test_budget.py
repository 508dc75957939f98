"""The catch-up budget and its pace: halved in a strained second, one more in a calm one, never
below one read at a time; what counts as strained."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from gateway.core import Budget, LoopLag, Pace
from gateway.core.budget import LAG_S, LAPSES_PER


class Lapses:
    """The fleet's lapse counter as the pace reads it."""

    def __init__(self, meters: int) -> None:
        self.total = 0
        self.meters = meters

    def __call__(self) -> tuple[int, int]:
        return self.total, self.meters


async def test_a_budget_allows_reads_up_to_what_it_allows_now() -> None:
    budget = Budget(2)
    assert not budget.locked()
    async with budget:
        assert not budget.locked()
        async with budget:
            assert budget.locked()
            assert budget.in_use == 2
    assert budget.in_use == 0
    assert not budget.locked()


async def test_a_read_that_fails_gives_its_place_back() -> None:
    budget = Budget(1)
    with pytest.raises(RuntimeError):
        async with budget:
            raise RuntimeError("the meter broke")
    assert budget.in_use == 0
    assert not budget.locked()


def test_strained_halves_down_to_one_and_calm_adds_one_up_to_the_limit() -> None:
    budget = Budget(8)
    seen = []
    for _ in range(5):
        budget.strained()
        seen.append(budget.allowed)
    assert seen == [4, 2, 1, 1, 1]
    assert budget.cuts == 3  # the seconds that changed it
    for _ in range(9):
        budget.eased()
        seen.append(budget.allowed)
    assert seen[5:] == [2, 3, 4, 5, 6, 7, 8, 8, 8]


async def test_one_read_stays_allowed_however_strained() -> None:
    budget = Budget(8)
    for _ in range(10):
        budget.strained()
    assert not budget.locked()
    async with budget:
        assert budget.locked()


def test_a_limit_of_zero_allows_nothing_and_a_negative_one_is_refused() -> None:
    budget = Budget(0)
    assert budget.locked()
    budget.eased()
    budget.strained()
    assert budget.locked()
    with pytest.raises(ValueError, match="negative"):
        Budget(-1)


def test_lapsed_polls_beyond_one_per_hundred_meters_strain_every_budget() -> None:
    lapses = Lapses(meters=250)
    history, energy = Budget(8), Budget(8)
    pace = Pace([history, energy], lapses, LoopLag())
    allowed = 250 // LAPSES_PER
    lapses.total += allowed  # as many as a fleet of this size may lose in a second: calm
    assert pace.turn(0.0) is False
    assert (history.allowed, energy.allowed) == (8, 8)
    lapses.total += allowed + 1
    assert pace.turn(0.0) is True
    assert (history.allowed, energy.allowed) == (4, 4)
    assert pace.turn(0.0) is False  # nothing new lapsed: calm again
    assert (history.allowed, energy.allowed) == (5, 5)


def test_in_a_small_fleet_one_lapsed_poll_strains() -> None:
    lapses = Lapses(meters=3)
    budget = Budget(8)
    pace = Pace([budget], lapses, LoopLag())
    lapses.total += 1
    assert pace.turn(0.0) is True
    assert budget.allowed == 4


def test_a_late_loop_strains_and_a_punctual_one_does_not() -> None:
    budget = Budget(8)
    pace = Pace([budget], Lapses(meters=10), LoopLag())
    assert pace.turn(LAG_S * 0.9) is False
    assert pace.turn(LAG_S * 1.5) is True
    assert budget.allowed == 4


def test_counters_that_start_anew_after_a_reload_are_not_a_strain() -> None:
    lapses = Lapses(meters=10)
    lapses.total = 50
    budget = Budget(8)
    pace = Pace([budget], lapses, LoopLag())  # counts from what the fleet shows at the start
    assert pace.turn(0.0) is False
    lapses.total = 0  # the pollers were replaced
    assert pace.turn(0.0) is False
    lapses.total = 1
    assert pace.turn(0.0) is True


def test_a_change_of_judgement_is_logged_once() -> None:
    lapses = Lapses(meters=5)
    pace = Pace([Budget(8)], lapses, LoopLag())
    with structlog.testing.capture_logs() as logs:
        lapses.total += 3
        pace.turn(0.0)
        lapses.total += 3
        pace.turn(0.0)
        pace.turn(0.0)
        pace.turn(0.0)
    events = [(e["event"], e.get("lapsed_polls")) for e in logs]
    assert events == [("catchup_strained", 3), ("catchup_calm", 0)]
    assert logs[0]["allowed"] == [8]  # as the strained second found it


async def test_run_judges_each_second_by_the_worst_lateness_of_the_loop() -> None:
    lag = LoopLag()
    turns: list[bool] = []

    async def sleep(seconds: float) -> None:
        if len(turns) == 1:
            lag.note(LAG_S * 2)  # the loop ran late in the second second only
        lag.note(LAG_S / 10)
        await asyncio.sleep(0)

    budget = Budget(8)
    pace = Pace([budget], Lapses(meters=10), lag, sleep=sleep)
    original = pace.turn

    def turn(lag_s: float) -> bool:
        strained = original(lag_s)
        turns.append(strained)
        return strained

    pace.turn = turn  # type: ignore[method-assign]
    task = asyncio.create_task(pace.run(), name="pace")
    while len(turns) < 3:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turns[:3] == [False, True, False]
