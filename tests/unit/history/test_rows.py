"""Stored rows -> published history rows: average rates, cumulative units, the base row;
and the atomic state file the watermarks live in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.history.rows import HistoryRow, history_rows
from gateway.support import statefile

KWH = 3_600_000.0  # W·s per kWh


def by_name(row: HistoryRow) -> dict[str, tuple[float | None, float | None]]:
    return {v.name: (v.rate, v.cumulative) for v in row.values}


def test_average_rate_over_each_step_and_cumulative_in_state_units() -> None:
    stored = [(10.0, {"Grid": 7_200_000, "L1": 5000}),
              (11.0, {"Grid": 7_201_000, "L1": 125_000}),
              (12.0, {"Grid": 7_203_500, "L1": 245_500})]
    rows = history_rows(stored, [("Grid", "P"), ("L1", "V")], after=10, through=12)
    assert [(r.ts, r.dt) for r in rows] == [(11, 1), (12, 1)]
    # power: raw W·s, rate W = delta / dt, cumulative kWh; voltage: quantum 0.001 V
    assert by_name(rows[0]) == {"Grid": (1000.0, pytest.approx(7_201_000 / KWH)),
                                "L1": (pytest.approx(120.0), pytest.approx(125.0))}
    assert by_name(rows[1])["Grid"] == (2500.0, pytest.approx(7_203_500 / KWH))
    assert rows[1].values[1].unit == "V"
    assert rows[1].values[0].cumulative_unit == "kWh"
    assert rows[0].values[0].raw == 7_201_000


def test_minute_rows_average_over_their_own_spacing() -> None:
    stored = [(600.0, {"Grid": 0}), (660.0, {"Grid": 60_000}), (661.0, {"Grid": 61_500})]
    rows = history_rows(stored, [("Grid", "P")], after=630, through=700)
    assert [(r.ts, r.dt) for r in rows] == [(660, 60), (661, 1)]
    assert by_name(rows[0])["Grid"][0] == 1000.0  # 60 000 W·s over 60 s
    assert by_name(rows[1])["Grid"][0] == 1500.0


def test_rows_outside_the_window_are_left_out_and_without_a_base_there_is_no_rate() -> None:
    stored = [(101.0, {"Grid": 10}), (102.0, {"Grid": 30}), (103.0, {"Grid": 60})]
    rows = history_rows(stored, [("Grid", "P")], after=100, through=102)
    assert [(r.ts, r.dt) for r in rows] == [(101, None), (102, 1)]
    assert by_name(rows[0])["Grid"][0] is None
    assert by_name(rows[1])["Grid"][0] == 20.0


def test_discrete_registers_carry_their_value_and_unknown_codes_stay_opaque() -> None:
    stored = [(0.0, {"Mode": 3, "X": 0}), (1.0, {"Mode": 4, "X": 7})]
    [row] = history_rows(stored, [("Mode", "d"), ("X", "zz")], after=0, through=1)
    assert by_name(row) == {"Mode": (4.0, 4.0), "X": (7.0, 7.0)}


def test_a_wrapped_accumulator_gives_the_small_difference() -> None:
    top = (1 << 63) - 5
    stored = [(0.0, {"Grid": top}), (1.0, {"Grid": -(1 << 63) + 5})]
    [row] = history_rows(stored, [("Grid", "P")], after=0, through=1)
    assert by_name(row)["Grid"][0] == 10.0


def test_registers_missing_from_a_row_are_skipped_and_others_are_ignored() -> None:
    stored = [(0.0, {"Grid": 0, "Other": 1}), (1.0, {"Other": 2})]
    [row] = history_rows(stored, [("Grid", "P")], after=0, through=1)
    assert row.values == ()


def test_state_file_round_trip_and_atomic_replacement(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history.json"
    assert statefile.read_json(path) is None
    statefile.write_json(path, {"meters": {"a": {"published_until": 1}}})
    first_inode = os.stat(path).st_ino
    statefile.write_json(path, {"meters": {"a": {"published_until": 2}}})
    assert statefile.read_json(path) == {"meters": {"a": {"published_until": 2}}}
    assert os.stat(path).st_ino != first_inode  # a new file renamed over the old one
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.json"]  # no leftovers


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    statefile.write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        statefile.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]
