"""PowerTrend: bucket averages of each meter's main power registers, bounded in memory."""

from __future__ import annotations

from gateway.model import Reading, RegisterInfo, RegisterValue
from gateway.observe import PowerTrend
from gateway.observe.plot import nice_ticks


def reading(ts: float, rates: dict[str, float], meter: str = "m") -> Reading:
    codes = {"Temp": "T"}
    return Reading(meter, ts, tuple(
        RegisterValue(n, codes.get(n, "P"), "W", r, 0.0, "kWh") for n, r in rates.items()))


def test_each_bucket_holds_the_average_rate_of_its_readings() -> None:
    trend = PowerTrend(window_s=60, step_s=10)
    for ts, grid in ((100, 10), (105, 30), (110, 50), (119, 70), (120, 5)):
        trend.on_reading(reading(ts, {"Grid": grid, "Temp": 21.5}))
    assert trend.series("m") == [("Grid", [(100.0, 20.0), (110.0, 60.0), (120.0, 5.0)])]


def test_virtual_totals_come_first_and_at_most_four_are_followed() -> None:
    trend = PowerTrend()
    trend.on_registers("m", (RegisterInfo("A", "P", 0, 0), RegisterInfo("use", "P", 1),
                             RegisterInfo("gen", "P", 2)))
    trend.on_reading(reading(0, {"A": 1, "B": 2, "C": 3, "use": 4, "gen": 5, "Temp": 20}))
    assert [name for name, _ in trend.series("m")] == ["use", "gen", "A", "B"]


def test_the_ring_keeps_only_the_window() -> None:
    trend = PowerTrend(window_s=30, step_s=10)  # three buckets
    for ts in range(0, 100, 10):
        trend.on_reading(reading(ts, {"Grid": ts}))
    [(_, points)] = trend.series("m")
    assert points == [(70.0, 70.0), (80.0, 80.0), (90.0, 90.0)]


def test_a_register_set_without_the_followed_names_starts_afresh() -> None:
    trend = PowerTrend(window_s=60, step_s=10)
    trend.on_reading(reading(0, {"Grid": 1}))
    trend.on_reading(reading(10, {"Solar": 2}))
    assert trend.series("m") == [("Solar", [(10.0, 2.0)])]
    trend.forget([])
    assert trend.series("m") == []


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(-171.2, 169.8, 5) == [-200.0, -100.0, 0.0, 100.0, 200.0]
    assert nice_ticks(0.0, 50.0, 8) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert nice_ticks(5.0, 5.0)[0] <= 5.0 <= nice_ticks(5.0, 5.0)[-1]
