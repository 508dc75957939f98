"""One meter's counters against a fake database: consecutive polls advance them directly,
every gap is filled from the database's rows (1-second where it has them, coarser beyond),
never skipping or counting a second twice; resets and a moved epoch add nothing."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import EnergyConfig
from gateway.energy import EnergyLane, MeterTally
from tests.support.meter_database import Database, expected

Lanes = dict[str, EnergyLane]


def lane(db: Database) -> EnergyLane:
    return EnergyLane(db, asyncio.Lock(), lambda: time.monotonic() + 60.0)


def tally(rows: int = 600, **cfg: object) -> MeterTally:
    t = MeterTally("main", EnergyConfig(**cfg), rows)  # type: ignore[arg-type]
    t.online = True
    return t


async def drain(t: MeterTally, db: Database) -> int:
    """Fill until nothing is left to do; the number of requests made."""
    before = len(db.calls)
    for _ in range(10_000):
        if not await t.fill_once(lane(db), time.monotonic):
            break
    return len(db.calls) - before


async def poll(t: MeterTally, db: Database, seconds: list[int]) -> None:
    """Live polls at ``seconds``, each followed by the gap filling the service would do."""
    for s in seconds:
        t.take(db.reading(s))
        await drain(t, db)


def totals(t: MeterTally, name: str) -> tuple[int, int]:
    c = t.counters[name]
    return c.imported, c.exported


def swinging(n: int, amplitude: int = 4000) -> list[int]:
    """Changes that cross zero every 7 seconds."""
    return [(amplitude * ((k % 14) - 7)) // 7 + (k % 3) for k in range(n)]


async def test_consecutive_polls_advance_without_asking_the_database() -> None:
    db = Database({"Grid": swinging(100), "Solar": [-5] * 100})
    t = tally()
    await poll(t, db, list(range(db.start + 1, db.start + 60)))
    assert db.calls == []  # the epoch is read before a gap is filled: there was none
    assert t.counters["Grid"].through == db.start + 59
    assert totals(t, "Grid") == expected(db, "Grid", list(range(db.start + 1, db.start + 60)))
    assert totals(t, "Solar") == (0, 5 * 58)


async def test_polls_ten_seconds_apart_are_filled_from_one_second_rows() -> None:
    db = Database({"Grid": swinging(300), "Solar": swinging(300, 999)})
    t = tally()
    seconds = list(range(db.start + 3, db.start + 290, 10))
    await poll(t, db, seconds)
    for name in ("Grid", "Solar"):
        assert totals(t, name) == expected(db, name, seconds)
        assert t.counters[name].through == seconds[-1]
    assert t.stats.coarse_rows == 0
    # one window per gap, each beginning where the counters stood
    starts = [int(c[0]) for c in db.calls]
    assert starts == seconds[:-1]


async def test_a_long_gap_is_read_in_windows_of_max_rows() -> None:
    db = Database({"Grid": swinging(2_000), "Solar": [1] * 2_000})
    t = tally(rows=100)
    first, last = db.start + 1, db.start + 1_950
    await poll(t, db, [first, last])
    assert totals(t, "Grid") == expected(db, "Grid", [first, last])
    for start, _step, end, max_rows in db.calls[1:]:
        assert max_rows == 100
        assert end - start + 1 <= 100  # the window never holds more rows than asked for


async def test_beyond_the_fine_level_minute_rows_count_by_their_sign_and_are_reported() -> None:
    db = Database({"Grid": swinging(1_000), "Solar": [3] * 1_000}, fine_from=1_000_600)
    t = tally()
    first, last = db.start + 5, db.start + 900
    with structlog.testing.capture_logs() as logs:
        await poll(t, db, [first, last])
    assert totals(t, "Grid") == expected(db, "Grid", [first, last])
    assert totals(t, "Solar") == (3 * 895, 0)
    coarse = [e for e in logs if e["event"] == "energy_coarse_rows"]
    assert coarse
    assert all(e["meter"] == "main" for e in coarse)
    # the minute rows after the base, and the first 1-second row (a step from the last
    # minute row): every second from the base to the fine level lost its resolution
    steps = [s for s in range(first + 1, db.fine_from + 1) if db.stored(s)]
    assert steps[0] == 1_000_020
    assert steps[-1] == db.fine_from
    assert sum(e["rows"] for e in coarse) == t.stats.coarse_rows == len(steps)
    assert sum(e["seconds"] for e in coarse) == t.stats.coarse_seconds == db.fine_from - first


async def test_a_sparse_region_is_read_in_wide_windows_and_a_cut_reply_asked_again() -> None:
    """A year of minute rows would take forever 600 seconds at a time; a window that hits
    max-rows has lost its oldest rows and is asked again narrower."""
    db = Database({"Grid": [7] * 200_000, "Solar": [-2] * 200_000}, fine_from=1_180_000)
    t = tally(rows=50)
    first, last = db.start + 1, db.start + 199_990
    await poll(t, db, [first, last])
    assert totals(t, "Grid") == (7 * (last - first), 0)
    assert totals(t, "Solar") == (0, 2 * (last - first))
    widths = [end - start for start, _s, end, _m in db.calls[1:]]
    assert max(widths) == 49 * 60  # minute rows: windows of max-rows - 1 minutes
    coarse = [c for c in db.calls if c[0] < db.fine_from]
    assert len(coarse) < 180_000 / (49 * 60) + 10  # not one request per 49 seconds
    assert all(end - start == 49 for start, _s, end, _m in db.calls[1:-1] if start > db.fine_from)


@settings(max_examples=60)
@given(
    grid=st.lists(st.integers(-4000, 4000), min_size=400, max_size=400),
    polls=st.sets(st.integers(1, 399), min_size=2, max_size=60),
    fine_from=st.integers(0, 400),
    rows=st.integers(2, 90),
)
async def test_any_poll_schedule_counts_every_stored_second_exactly_once(
        grid: list[int], polls: set[int], fine_from: int, rows: int) -> None:
    db = Database({"Grid": grid, "Solar": [-g // 3 for g in grid]},
                  fine_from=1_000_000 + fine_from)
    t = tally(rows=rows)
    seconds = sorted(db.start + p for p in polls)
    await poll(t, db, seconds)
    for name in ("Grid", "Solar"):
        assert totals(t, name) == expected(db, name, seconds)
        assert t.counters[name].through == seconds[-1]


async def test_a_cumulative_reset_adds_nothing_and_counting_goes_on() -> None:
    changes = swinging(200)
    changes[120] = -(10**9) + 500  # the accumulator restarts from almost 0 at second 121
    db = Database({"Grid": changes, "Solar": [4] * 200})
    t = tally()
    seconds = [db.start + 100, db.start + 110, db.start + 150, db.start + 151]
    with structlog.testing.capture_logs() as logs:
        await poll(t, db, seconds)
    jumps = [e for e in logs if e["event"] == "energy_discontinuity"]
    assert [(e["register"], e["at"]) for e in jumps] == [("Grid", db.start + 121)]
    before = expected(db, "Grid", [db.start + 100, db.start + 120])
    after = expected(db, "Grid", [db.start + 121, db.start + 151])
    assert totals(t, "Grid") == (before[0] + after[0], before[1] + after[1])
    assert totals(t, "Solar") == (4 * 51, 0)
    assert t.stats.discontinuities == 1


async def test_a_moved_epoch_skips_the_step_across_it() -> None:
    db = Database({"Grid": [10] * 100, "Solar": [1] * 100})
    t = tally()
    t.need_epoch = True
    await poll(t, db, [db.start + 1, db.start + 5])
    assert t.epoch == "999000"
    assert totals(t, "Grid") == (40, 0)
    db.epoch = "999600"  # moved while the meter was away
    for name in db.raws:  # every value is relative to the new epoch now
        db.raws[name] = [r - 6000 for r in db.raws[name]]
    t.online = False
    t.need_epoch = True
    t.online = True
    with structlog.testing.capture_logs() as logs:
        await poll(t, db, [db.start + 20, db.start + 21])
    assert [e["event"] for e in logs].count("energy_epoch_changed") == 1
    # 5 -> 6 is not counted (the step across the change); 6 .. 21 are
    assert totals(t, "Grid") == (40 + 10 * 15, 0)


async def test_origin_meter_counts_from_the_database_epoch() -> None:
    db = Database({"Grid": [5] * 3_000, "Solar": [0] * 3_000}, fine_from=1_002_000,
                  epoch="1000000")
    for name in db.raws:  # values are relative to the epoch: 0 there
        db.raws[name] = [r - 10**9 for r in db.raws[name]]
    t = tally(origin="meter")
    t.need_epoch = True
    await poll(t, db, [db.start + 2_990])  # the epoch is read, then the counter starts
    await poll(t, db, [db.start + 2_995])
    assert totals(t, "Grid") == (5 * 2_995, 0)
    assert t.counters["Grid"].through == db.start + 2_995


async def test_a_failed_request_pauses_the_filling_and_nothing_is_lost() -> None:
    db = Database({"Grid": swinging(100), "Solar": [1] * 100})
    t = tally()
    await poll(t, db, [db.start + 1])
    db.down = True
    with structlog.testing.capture_logs() as logs:
        await poll(t, db, [db.start + 30])
    assert [e["event"] for e in logs if e["event"].startswith("energy_")] == [
        "energy_request_failed"]
    assert t.counters["Grid"].through == db.start + 1
    db.down = False
    t.paused_until = 0.0
    await poll(t, db, [db.start + 40])
    assert totals(t, "Grid") == expected(db, "Grid", [db.start + 1, db.start + 40])


async def test_a_repeated_or_older_row_is_ignored() -> None:
    db = Database({"Grid": swinging(50), "Solar": [1] * 50})
    t = tally()
    await poll(t, db, [db.start + 10, db.start + 11, db.start + 11, db.start + 9])
    assert t.counters["Grid"].through == db.start + 11
    assert totals(t, "Grid") == expected(db, "Grid", [db.start + 10, db.start + 11])


@pytest.mark.parametrize("names", [None, ("Grid",)])
async def test_only_the_selected_registers_are_counted(names: tuple[str, ...] | None) -> None:
    db = Database({"Grid": [1] * 10, "Solar+": [1] * 10})
    t = tally(registers=names)
    await poll(t, db, [db.start + 1, db.start + 2])
    assert set(t.counters) == {"Grid"}  # auto: a "+" register runs one way only
