"""Pure parts of the simulator: register selection, JSON tree shaping, database levels,
value functions and fault switches."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from gateway.simulator import Faults, Mix, Signal, SimMeter, Wave, default_registers, router
from gateway.simulator.database import Database, Level
from gateway.simulator.registers import check_register_set, physical, reordered, virtual
from gateway.simulator.reply import QueryError
from gateway.simulator.selection import select
from gateway.simulator.tree import shape
from gateway.support import Request

REGS = default_registers()
ALL_IDX = [0, 1, 3, 5, 6, 8, 9, 11, 12, 14, 15]


def idx_of(*params: tuple[str, str]) -> list[int]:
    return [r.idx for r in select(REGS, params)]


def test_default_registers_have_gaps_and_idx_differs_from_did() -> None:
    assert [r.idx for r in REGS] == ALL_IDX
    phys = [r for r in REGS if not r.virtual]
    assert all(r.idx != r.did for r in phys)
    names = {r.name for r in REGS}
    assert {"Grid", "Solar+", "Panel A/B", "Amps #1", "Temp Büro", "use", "gen"} <= names
    assert {r.type_code for r in phys} >= {"P", "V", "I", "F", "PQ", "S", "T"}
    spec_coded = default_registers(reactive_code="var")
    assert [r.type_code for r in spec_coded if r.name == "Reactive"] == ["var"]
    with pytest.raises(ValueError, match="reactive_code"):
        default_registers(reactive_code="VAR")


@pytest.mark.parametrize(
    ("reg", "expected"),
    [
        ("all", ALL_IDX),
        ("none", []),
        ("3", [3]),
        ("3:8", [3, 5, 6, 8]),
        ("all-0:7", [8, 9, 11, 12, 14, 15]),
        ("none+3+9", [3, 9]),
        ("0:3+5", [0, 1, 3, 5]),
        ("+5", ALL_IDX),
        ("-3", [i for i in ALL_IDX if i != 3]),
        ("3+5-5+6", [3, 6]),
        ("2", []),  # no register has idx 2
        ("99", []),
    ],
)
def test_reg_set_algebra(reg: str, expected: list[int]) -> None:
    assert idx_of(("reg", reg)) == expected


def test_parameters_apply_left_to_right() -> None:
    assert idx_of(("reg", "3"), ("reg", "+5")) == [3, 5]
    assert idx_of(("reg", "3:6"), ("reg", "-5")) == [3, 6]


def test_views_select_by_name_prefix() -> None:
    regs = [*REGS[:3], physical("apt1.oven", "P", 20, 20, Wave(1.0)),
            physical("apt1.fridge", "P", 21, 21, Wave(1.0)),
            physical("apt2.oven", "P", 22, 22, Wave(1.0))]
    names = [r.name for r in select(regs, [("view", "=apt1")])]
    assert names == ["apt1.oven", "apt1.fridge"]
    assert [r.idx for r in select(regs, [("view", "apt2"), ("view", "+apt1")])] == [20, 21, 22]
    assert [r.idx for r in select(regs, [("view", "-apt1")])] == [0, 1, 3, 22]


@pytest.mark.parametrize("reg", ["abc", "3:1", "3 5", "", "3++5", "all,3"])
def test_bad_reg_is_a_query_error(reg: str) -> None:
    with pytest.raises(QueryError):
        idx_of(("reg", reg))


def test_register_set_checks() -> None:
    with pytest.raises(ValueError, match="duplicate register idx"):
        check_register_set([*REGS, physical("New", "P", 3, 40, Wave(1.0))])
    with pytest.raises(ValueError, match="unknown"):
        check_register_set([virtual("use", "P", 0, "+Nope"), *REGS[2:]])
    with pytest.raises(ValueError, match="all digits"):
        physical("123", "P", 1, 1, Wave(1.0))
    moved = reordered(REGS, ["Apparent", "Grid"])
    assert {r.name: r.idx for r in moved}["Apparent"] == 0
    assert sorted(r.idx for r in moved) == ALL_IDX


def test_formula_text_escapes_quotes_and_backslashes() -> None:
    reg = virtual("x", "P", 0, '+Panel "A"', "-back\\slash")
    assert reg.formula_text() == '+"Panel \\"A\\""-"back\\\\slash"'


def test_filter_and_max_depth_follow_the_spec_examples() -> None:
    value = {"obj": {"a": 1, "b": 2}, "arr": [1, 2, 3, 4]}
    assert shape(value, {"max-depth": "2"}) == {"obj": ["a", "b"], "arr": 4}
    assert shape(value, {"max-depth": "1"}) == ["obj", "arr"]
    assert shape({"model": "EG4115", "sn": "G1", "x": 1}, {"filter": "{model,sn}"}) == {
        "model": "EG4115", "sn": "G1"}
    regs = {"reg": [{"addr": i, "name": f"r{i}"} for i in range(10)], "other": 1}
    assert shape(regs, {"filter": "{reg[7:8{addr}]}"}) == {"reg": [{"addr": 7}, {"addr": 8}]}
    assert shape([10, 11, 12, 13, 14, 15], {"filter": "[0,3:5]"}) == [10, 13, 14, 15]


@pytest.mark.parametrize("params", [{"filter": "{a"}, {"filter": "a,b"}, {"filter": "[x]"},
                                    {"max-depth": "0"}, {"max-depth": "deep"}])
def test_bad_shaping_is_a_query_error(params: dict[str, str]) -> None:
    with pytest.raises(QueryError):
        shape({"a": 1}, params)


def test_database_levels_round_to_stored_rows() -> None:
    levels = (Level(1, 100, volatile=True), Level(60, 1000))
    now = 1_000_000
    db = Database(levels, created=now - 30_000, volatile_since=now - 50_000, now=now)
    assert db.row_at(now) == now
    assert db.row_at(now + 500) == now  # the future rounds to the newest row
    assert db.row_at(now - 99) == now - 99  # oldest 1-second row
    assert db.row_at(now - 100.5) == (now - 100.5) // 60 * 60  # falls to a minute row
    assert db.row_at(now - 100.5, round_up=True) == 999_900  # the next minute row
    assert db.row_at(now - 99.5, round_up=True) == now - 99  # the oldest 1-second row
    assert db.row_at(now - 40_000) is None  # before the database existed
    assert db.row_at(now - 40_000, round_up=True) == math.ceil((now - 30_000) / 60) * 60
    rebooted = Database(levels, created=now - 30_000, volatile_since=now - 10, now=now)
    assert rebooted.row_at(now - 20) == (now - 20) // 60 * 60  # 1-second rows were lost


def test_wave_integral_matches_numeric_integration() -> None:
    wave = Wave(400.0, 1500.0, 600.0, 0.3)
    t0, t1, n = 1_700_000_000.0, 1_700_000_777.0, 77_700
    h = (t1 - t0) / n
    simpson = wave.rate(t0) + wave.rate(t1) + sum(
        (4 if i % 2 else 2) * wave.rate(t0 + i * h) for i in range(1, n))
    assert wave.integral(t0, t1) == pytest.approx(simpson * h / 3, rel=1e-9)


def roundings(signal: Signal) -> int:
    """How many separately rounded counts make up ``signal``'s count: each may put its
    per-second change off the exact integral by less than one quantum."""
    if isinstance(signal, Mix) and all(w in (1, -1) for w, _ in signal.terms):
        return sum(roundings(s) for _, s in signal.terms)
    return 1


def test_meter_values_are_quantized_integrals() -> None:
    meter = SimMeter(clock=lambda: 1_700_000_000.0)
    t = 1_699_990_000
    for name in ("Grid", "Voltage L1", "Temp Büro", "Amps #1"):
        reg = meter.register(name)
        changes = meter.raw_changes(name, t, t + 10)
        assert changes == [meter.raw(name, t + i) - meter.raw(name, t + i - 1)
                           for i in range(1, 11)]
        for i, change in enumerate(changes, start=1):
            # the rate of a second is its change in quanta, written with the quantum's
            # decimals, and it is the integral of the value over that second
            rate = meter.rate(name, t + i + 0.75)
            assert round(rate / reg.quantum) == change
            assert rate == pytest.approx(change * reg.quantum, abs=reg.quantum / 1000)
            assert reg.wave is not None
            exact = reg.wave.integral(t + i - 1, t + i)
            assert abs(rate - exact) < roundings(reg.wave) * reg.quantum
        assert meter.cumulative(name, t) == meter.raw(name, t) * reg.quantum
    assert meter.rate("use", t) == meter.rate("Grid", t) + meter.rate("Solar+", t)
    assert meter.raw("use", t) == meter.raw("Grid", t) + meter.raw("Solar+", t)
    assert meter.raw("Grid", t + 0.99) == meter.raw("Grid", t)  # a stored second


def test_grid_runs_backwards_around_noon_and_panel_always() -> None:
    meter = SimMeter(clock=lambda: 1_700_000_000.0)
    midnight = 1_700_000_000 // 86400 * 86400
    grid = [meter.rate("Grid", midnight + h * 3600) for h in range(24)]
    assert min(grid[0], grid[23]) > 0  # import at night
    assert grid[12] < 0  # export at noon
    fast = SimMeter(clock=lambda: 1_700_000_000.0, day_s=600)
    swings = [fast.rate("Grid", 1_700_000_000 + i) for i in range(600)]
    assert min(swings) < 0 < max(swings)  # a 600-second day: both ways within 10 minutes
    panel = [meter.raw("Panel A/B", 1_700_000_000 + 60 * i) for i in range(20)]
    assert all(b < a for a, b in itertools.pairwise(panel))


def test_fault_switches_count_down_and_validate() -> None:
    faults = Faults(http_500=2)
    assert faults.take("http_500")
    assert faults.take("http_500")
    assert not faults.take("http_500")
    faults.update({"broken_json": 1, "latency_s": 0.5})
    assert (faults.broken_json, faults.latency_s) == (1, 0.5)
    for bad in ({"nope": 1}, {"hang": 1.5}, {"http_500": -1}, {"http_500_probability": 2},
                {"latency_s": 0.1, "reset": "x"}):
        with pytest.raises(ValueError, match=r"fault|http_500_probability"):
            faults.update(bad)
    assert faults.latency_s == 0.5  # a rejected update changes nothing
    faults.http_500_probability = 1.0
    assert faults.fails_500(random.Random(1))
    faults.clear()
    assert faults.as_dict() == Faults().as_dict()


def test_a_register_reply_reads_every_value_at_the_second_it_stamps() -> None:
    # the clock crosses a second while the reply is built: the rates are still of the second
    # that the reply's "ts" names (the gateway's state pairs them)
    start = 1_700_000_000
    reads = iter([start + 0.999] * 3)
    meter = SimMeter("SIM0099", clock=lambda: next(reads, start + 1.001))
    query = (("rate", ""), ("time", "now"), ("virtual", "value"))
    request = Request("GET", "/api/register", query, {}, b"",
                      raw_query="rate&time=now&virtual=value")
    reply = json.loads(router._data(meter, "register", request).body)
    second = int(float(reply["ts"]))
    grid = next(r for r in reply["registers"] if r["name"] == "Grid")
    assert grid["rate"] == meter.rate("Grid", second)
    assert meter.rate("Grid", second) != meter.rate("Grid", second + 1)  # else no proof
