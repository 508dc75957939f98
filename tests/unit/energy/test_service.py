"""The energy service: what the outputs get with each reading (only counters already on
disk), the file (atomic, checked, read back at start), reloads and the history rows' split."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest

from gateway.config import EnergyConfig, MeterConfig
from gateway.energy import STATE_FILE, Energy, EnergyLane, persist_interval
from gateway.errors import StateFileError
from gateway.history import HistoryRow
from gateway.model import LocalValue, RegisterValue
from gateway.secret import Secret
from tests.support.meter_database import Database


def meter(meter_id: str = "main", **energy: object) -> MeterConfig:
    return MeterConfig(meter_id, "http://127.0.0.1:9", "owner", Secret("pw"),
                       energy=EnergyConfig(**energy))  # type: ignore[arg-type]


def service(tmp_path: Path, db: Database, *meters: MeterConfig) -> Energy:
    lanes = {m.id: EnergyLane(db, asyncio.Lock(), lambda: time.monotonic() + 60.0)
             for m in meters or (meter(),)}
    return Energy(meters or (meter(),), lanes.get, tmp_path)


def saved(tmp_path: Path) -> dict[str, dict[str, object]]:
    data = json.loads((tmp_path / STATE_FILE).read_text())
    return data["meters"]["main"]["registers"]  # type: ignore[no-any-return]


async def test_readings_carry_only_counters_already_written(tmp_path: Path) -> None:
    db = Database({"Grid": [100, -40, 25, 7], "Solar": [-3] * 4})
    energy = service(tmp_path, db)
    await energy.start()
    first = energy.stage(db.reading(db.start + 1))
    assert all(v.energy is None for v in first.registers)  # nothing on disk yet
    second = energy.stage(db.reading(db.start + 2))
    assert all(v.energy is None for v in second.registers)
    await energy.save()
    on_disk = saved(tmp_path)
    assert on_disk["Grid"]["through"] == db.start + 2
    third = energy.stage(db.reading(db.start + 3))  # counted to +3, published: +2 (on disk)
    grid = third.by_name()["Grid"].energy
    assert grid is not None
    assert (grid.imported, grid.exported, grid.through) == (0, 40, db.start + 2)
    assert grid.unit == "kWh"
    assert grid.export_value == pytest.approx(40 / 3.6e6)


async def test_a_restart_resumes_from_the_file_and_publishes_it_at_once(tmp_path: Path) -> None:
    db = Database({"Grid": [5] * 20, "Solar": [1] * 20})
    energy = service(tmp_path, db)
    await energy.start()
    for s in range(1, 6):
        energy.stage(db.reading(db.start + s))
    energy.flush()  # a crash: what was counted is written synchronously
    again = service(tmp_path, db)
    await again.start()
    grid = again.stage(db.reading(db.start + 6)).by_name()["Grid"].energy
    assert grid is not None
    assert (grid.imported, grid.through) == (20, db.start + 5)
    tally = again.tally("main")
    assert tally is not None
    assert tally.counters["Grid"].imported == 25


async def test_the_staged_reading_keeps_every_field_and_adds_only_the_counters(
        tmp_path: Path) -> None:
    db = Database({"Grid": [100, -40, 25, 7], "Solar": [-3] * 4})
    energy = service(tmp_path, db)
    await energy.start()
    energy.stage(db.reading(db.start + 1))
    await energy.save()
    plain = db.reading(db.start + 2)
    plain = dataclasses.replace(plain, local=(LocalValue("t", "T", "°C", 1.0, 2.0, 3.0),),
                                received=123.5, row=db.start + 2)
    staged = energy.stage(plain)
    counts = [v.energy for v in staged.registers]
    assert all(c is not None for c in counts)
    assert staged == dataclasses.replace(plain, registers=tuple(
        dataclasses.replace(v, energy=c) for v, c in zip(plain.registers, counts, strict=True)))


@pytest.mark.parametrize("left", ["instance-2", "worker-1", "instance-1/worker-3"])
async def test_a_meter_that_moves_to_another_process_resumes_from_the_file_it_left(
        tmp_path: Path, left: str) -> None:
    """``shard.count`` or ``gateway.workers`` changed: the meter's counters are in the
    directory of the instance or worker that counted it, and go on from there."""
    db = Database({"Grid": [5] * 20, "Solar": [1] * 20})
    lanes = {"main": EnergyLane(db, asyncio.Lock(), lambda: time.monotonic() + 60.0)}
    before = Energy((meter(),), lanes.get, tmp_path / left, shared_dir=tmp_path)
    await before.start()
    for s in range(1, 6):
        before.stage(db.reading(db.start + s))
    before.flush()
    after = Energy((meter(),), lanes.get, tmp_path / "fresh", shared_dir=tmp_path)
    await after.start()
    tally = after.tally("main")
    assert tally is not None
    assert (tally.counters["Grid"].imported, tally.counters["Grid"].through) == (
        20, db.start + 5)  # four seconds of 5 counted after the first


@pytest.mark.parametrize("text", [
    "not json", '{"version": 7, "meters": {}}',
    '{"version": 1, "meters": {"main": {"registers": {"Grid": {"through": "x"}}}}}',
    '{"version": 1, "meters": {"main": {"registers": {"Grid": {"type": "P", "through": 1, '
    '"raw": 2, "import": -3, "export": 0}}}}}',
])
async def test_a_damaged_file_stops_the_start(tmp_path: Path, text: str) -> None:
    (tmp_path / STATE_FILE).write_text(text)
    energy = service(tmp_path, Database({"Grid": [1], "Solar": [1]}))
    with pytest.raises(StateFileError) as info:
        await energy.start()
    assert info.value.path == str(tmp_path / STATE_FILE)


async def test_the_file_keeps_meters_not_served_and_a_reload_brings_them_back(
        tmp_path: Path) -> None:
    db = Database({"Grid": [9] * 10, "Solar": [0] * 10})
    energy = service(tmp_path, db, meter("main"), meter("spare"))
    await energy.start()
    for s in (1, 2, 3):
        energy.stage(db.reading(db.start + s))
    energy.prepare_meters([meter("spare")])()
    energy.flush()
    data = json.loads((tmp_path / STATE_FILE).read_text())
    assert data["meters"]["main"]["registers"]["Grid"]["import"] == 18
    energy.prepare_meters([meter("spare"), meter("main")])()
    assert energy.counts("main")["Grid"].imported == 18


async def test_energy_off_for_a_meter_counts_nothing(tmp_path: Path) -> None:
    db = Database({"Grid": [1] * 5, "Solar": [1] * 5})
    energy = service(tmp_path, db, meter(enabled=False))
    await energy.start()
    energy.stage(db.reading(db.start + 1))
    energy.stage(db.reading(db.start + 2))
    tally = energy.tally("main")
    assert tally is not None
    assert tally.counters == {}


async def test_history_rows_get_the_import_and_export_of_their_seconds(tmp_path: Path) -> None:
    db = Database({"Grid": [1] * 5, "Solar": [1] * 5})
    energy = service(tmp_path, db)
    await energy.start()
    energy.stage(db.reading(db.start + 1))
    grid = RegisterValue("Grid", "P", "W", None, None, "kWh", 0)
    volts = RegisterValue("L1", "V", "V", None, None, "V·s", 0)
    rows = [HistoryRow(10, None, (grid,), {}),
            HistoryRow(11, 1, (grid, volts), {"Grid": -700, "L1": 120_000}),
            HistoryRow(71, 60, (grid,), {"Grid": 90_000}),
            HistoryRow(72, 1, (grid,), {"Grid": -(10**9)})]  # implausible: nothing
    out = energy.annotate("main", rows)
    assert [dict(r.split) for r in out] == [{}, {"Grid": (0, 700)}, {"Grid": (90_000, 0)},
                                           {"Grid": (0, 0)}]
    assert energy.annotate("other", rows) == rows


@pytest.mark.parametrize(("meters", "seconds"), [
    (1, 1.0), (100, 1.0), (250, 2.5), (500, 5.0), (1000, 10.0), (5000, 10.0)])
def test_the_writes_grow_apart_with_the_fleet_up_to_ten_seconds(meters: int,
                                                                 seconds: float) -> None:
    # the documented rule (docs/ENERGY.md): 1 s up to 100 meters, a second more per 100
    assert persist_interval(meters) == seconds


def test_a_reload_sets_the_interval_for_the_new_fleet(tmp_path: Path) -> None:
    few = [meter(f"m{i}") for i in range(50)]
    many = [meter(f"m{i}") for i in range(400)]
    energy = Energy(few, lambda _m: None, tmp_path)
    assert energy.persist_s == 1.0
    energy.prepare_meters(many)()
    assert energy.persist_s == 4.0
    assert Energy(many, lambda _m: None, tmp_path, persist_s=0.5).persist_s == 0.5


async def test_a_gap_wakes_its_filling_task_only_while_the_budget_allows_a_read(
        tmp_path: Path) -> None:
    db = Database({"Grid": [5] * 20, "Solar": [1] * 20})
    lane = EnergyLane(db, asyncio.Lock(), lambda: time.monotonic() + 60.0)
    energy = Energy((meter(),), lambda _: lane, tmp_path, max_concurrent=1)
    await energy.start()
    energy.stage(db.reading(db.start + 1))
    tally = energy.tally("main")
    assert tally is not None
    tally.wake.clear()
    async with energy.budget:  # the fleet's reads are all taken
        assert energy.budget.locked()
        energy.stage(db.reading(db.start + 5))  # three seconds missed: a gap
        assert tally.target == db.start + 5
        assert not tally.wake.is_set()
    energy.stage(db.reading(db.start + 6))  # the gap is still open, and a read may start
    assert tally.wake.is_set()
