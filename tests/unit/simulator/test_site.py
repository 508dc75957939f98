"""The simulated site is physically consistent, counts like a meter's database, and a
reboot can reset its counters (no sockets: SimMeter's own Python API)."""

from __future__ import annotations

import itertools
import math

import pytest

from gateway.simulator import DayCurve, SimMeter, Wave
from tests.support.simulator import ManualClock

MIDNIGHT = 1_699_920_000  # 2023-11-14 00:00 UTC
DAY = 86_400


@pytest.fixture
def meter() -> SimMeter:
    """A meter whose clock stands at the end of the simulated day, so it is all stored."""
    return SimMeter(clock=ManualClock(MIDNIGHT + DAY + 0.5))


def test_a_simulated_day_is_physically_consistent(meter: SimMeter) -> None:
    changes = {n: meter.raw_changes(n, MIDNIGHT, MIDNIGHT + DAY)
               for n in ("use", "gen", "Grid", "Solar+", "Panel A/B")}
    use, gen, grid = changes["use"], changes["gen"], changes["Grid"]
    assert len(use) == DAY
    assert min(use) > 0  # the house always draws something
    assert min(gen) >= 0  # the array never consumes
    assert grid == [u - g for u, g in zip(use, gen, strict=True)]  # to the count
    assert gen == changes["Solar+"]
    hours = [sum(gen[h * 3600:(h + 1) * 3600]) for h in range(24)]
    assert hours[:6] == [0] * 6  # dark: the count stands still
    assert hours[18:] == [0] * 6
    assert min(hours[7:17]) > 0
    night, noon = grid[:6 * 3600] + grid[18 * 3600:], grid[11 * 3600:13 * 3600]
    assert min(night) > 0  # imports at night
    assert max(noon) < 0  # exports at midday
    panel = changes["Panel A/B"]
    assert max(panel) < 0  # a reversed CT on the sub-panel
    assert all(-p <= u for p, u in zip(panel, use, strict=True))  # a part of the load


def test_rates_are_the_quantised_change_of_their_second(meter: SimMeter) -> None:
    names = [r.name for r in meter.registers]
    for t in range(MIDNIGHT + 1, MIDNIGHT + DAY, 997):
        for name in names:
            reg = meter.register(name)
            change = meter.raw(name, t) - meter.raw(name, t - 1)
            rate = meter.rate(name, t)
            assert round(rate / reg.quantum) == change, (name, t)
            assert rate == pytest.approx(change * reg.quantum, abs=reg.quantum * 1e-6)
            if reg.quantum == 0.001:  # written with three decimals at most
                assert rate == round(rate, 3)
        assert meter.rate("use", t) == meter.rate("Grid", t) + meter.rate("Solar+", t)
        assert meter.raw("use", t) == meter.raw("Grid", t) + meter.raw("Solar+", t)
        assert meter.raw("gen", t) == meter.raw("Solar+", t)


def test_power_triangle_and_the_ct_products_agree(meter: SimMeter) -> None:
    for t in range(MIDNIGHT, MIDNIGHT + DAY, 1801):
        use, reactive = meter.rate("use", t), meter.rate("Reactive", t)
        apparent = meter.rate("Apparent", t)
        assert apparent > use > 0
        assert math.hypot(use, reactive) == pytest.approx(apparent, abs=8)  # S² = P² + Q²

        def energy(name: str, t: int = t) -> float:
            return meter.local_rate(name, t, section="energy")

        # the register definitions over the /local products, to a few counts of rounding
        assert energy("S1*L1") + energy("S2*L2") == pytest.approx(use, abs=8)
        assert energy("-S3*L1") + energy("-S4*L2") == pytest.approx(meter.rate("gen", t), abs=2)
        assert energy("S1*L1") + energy("S2*L2") + energy("S3*L1") + energy("S4*L2") == \
            pytest.approx(meter.rate("Grid", t), abs=10)
        assert energy("S5*L1") == pytest.approx(meter.rate("Panel A/B", t), abs=2)
        assert meter.local_rate("S1", t) == meter.rate("Amps #1", t)
        assert meter.local_rate("L1", t) == meter.rate("Voltage L1", t)
        assert meter.local_rate("L1", t, "f") == meter.rate("Frequency", t)


def test_a_short_day_makes_grid_change_direction_within_minutes() -> None:
    meter = SimMeter(clock=ManualClock(MIDNIGHT + 0.5), day_s=600)
    grid = meter.raw_changes("Grid", MIDNIGHT - 600, MIDNIGHT)
    assert min(grid) < 0 < max(grid)
    directions = sum(1 for a, b in itertools.pairwise(grid) if (a < 0) != (b < 0))
    assert directions == 2  # import, export around "noon", import again
    assert min(meter.raw_changes("gen", MIDNIGHT - 600, MIDNIGHT)) >= 0


def test_a_register_that_crosses_zero_every_n_seconds() -> None:
    """The documented recipe: a sine of period 2n around 0 changes sign at multiples of n."""
    n = 30
    meter = SimMeter(clock=ManualClock(MIDNIGHT + 0.5))
    meter.add_register("Swing", "P", Wave(0.0, 1000.0, 2 * n))
    for t in range(MIDNIGHT - 10 * n + 1, MIDNIGHT + 1):
        k = (t - 1) // n  # the second (t-1, t] lies in [k n, (k+1) n]
        rate = meter.rate("Swing", t)
        assert rate != 0
        assert (rate > 0) == (k % 2 == 0), t


def test_day_curve_counts_are_monotone_and_stand_still_at_night() -> None:
    curve = DayCurve(4000.0, 600)
    counts = [curve.counts(0, t, 1.0) for t in range(0, 3 * 600 + 1)]
    assert all(b >= a for a, b in itertools.pairwise(counts))
    assert counts[600] == counts[600 + 150]  # midnight to sunrise: nothing
    assert counts[600] == pytest.approx(curve.integral(0, 600), abs=1)
    assert curve.rate(1_700_000_000 - 1_700_000_000 % 600 + 300) == pytest.approx(4000.0)


def test_reboot_with_a_cumulative_reset_restarts_the_counters_from_zero() -> None:
    clock = ManualClock(MIDNIGHT + 12 * 3600 + 0.5)
    meter, twin = SimMeter(clock=clock), SimMeter(clock=clock)
    boot = int(clock())
    before = {r.name: meter.raw(r.name, boot) for r in meter.registers}
    token = meter.authority.issue("owner")
    first = meter.reboot_state(reset_cumulative=True)
    assert meter.authority.claims(token) is None  # a reboot revokes every token
    assert first == boot + 1
    clock.advance(30)
    for reg in meter.registers:
        name = reg.name
        assert meter.raw(name, boot) == before[name]  # stored rows keep their values
        assert meter.raw(name, first) == twin.raw(name, first) - twin.raw(name, boot)
        assert meter.raw(name, first + 20) == twin.raw(name, first + 20) - before[name]
        assert meter.rate(name, first) == twin.rate(name, first)  # rates stay physical
    assert meter.raw("Solar+", first) == meter.rate("Solar+", first)  # from 0, by 1 second
    jump = meter.raw_changes("use", boot - 1, first + 1)
    assert jump[1] == meter.raw("use", first) - before["use"] < 0  # the raw value drops
    assert jump[0] == round(meter.rate("use", boot))
    assert jump[2] == round(meter.rate("use", first + 1))
    db = meter.database()
    assert db.row_at(first + 5) == first + 5
    assert db.row_at(boot) == boot // 60 * 60  # the 1-second rows before it are lost


def test_reboot_can_rewind_the_counters_instead() -> None:
    clock = ManualClock(MIDNIGHT + 12 * 3600 + 0.5)
    meter, twin = SimMeter(clock=clock), SimMeter(clock=clock)
    boot = int(clock())
    first = meter.reboot_state(rewind_s=3600)
    for name in ("Grid", "Solar+", "Voltage L1"):
        # back to the value of an hour earlier, then counting on
        assert meter.raw(name, first) == twin.raw(name, boot - 3600) + (
            twin.raw(name, first) - twin.raw(name, boot))
    with pytest.raises(ValueError, match="not both"):
        meter.reboot_state(reset_cumulative=True, rewind_s=10)
    with pytest.raises(ValueError, match="rewind_s"):
        meter.reboot_state(rewind_s=0)


def test_a_plain_reboot_keeps_the_counters() -> None:
    clock = ManualClock(MIDNIGHT + 0.5)
    meter, twin = SimMeter(clock=clock), SimMeter(clock=clock)
    first = meter.reboot_state()
    assert meter.raw("Grid", first + 10) == twin.raw("Grid", first + 10)
    assert meter.database().row_at(first - 1) == (first - 1) // 60 * 60
