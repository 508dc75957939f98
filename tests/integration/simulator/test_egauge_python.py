"""Fidelity of the simulator as seen by eGauge's own client, egauge-python (synchronous,
requests-based, so the simulator runs in a background thread).

egauge-python's unit table knows reactive power only as ``PQ`` and raises KeyError on the
spec's ``var``, so the register reads below select registers by name and leave out the
simulator's ``Reactive`` register (type ``var``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from egauge import webapi
from egauge.webapi.device import Device, Local, Register

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.simulator import ManualClock

pytestmark = pytest.mark.integration

T = 1_700_000_000
NAMES = ["Grid", "Solar+", "Panel A/B", "Amps #1", "Temp Büro", "Voltage L1", "Frequency",
         "Apparent", "use"]  # not "Reactive": see the module docstring
UNITS = {"P": "W", "I": "A", "T": "°C", "V": "V", "F": "Hz", "S": "VA"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T + 0.5)


@pytest.fixture
def device(threaded_simulator: Callable[..., ThreadedSimServer],
           clock: ManualClock) -> tuple[Device, SimMeter]:
    meter = SimMeter("SIM0042", "owner", "s3cret", token_lifetime_s=60, clock=clock)
    sim = threaded_simulator([meter])
    return Device(sim.url_for(meter), auth=webapi.JWTAuth("owner", "s3cret")), meter


def test_hostname_and_identity(device: tuple[Device, SimMeter]) -> None:
    dev, meter = device
    assert dev.get("/config/net/hostname") == {"result": "eGauge-SIM0042"}
    assert dev.get("/sys/sn") == {"result": "SIM0042"}
    assert dev.is_up()
    assert meter.logins == 1


def test_registers_rates_and_rows(device: tuple[Device, SimMeter]) -> None:
    dev, meter = device
    reg = Register(dev, {"rate": "", "time": "now"}, regs=NAMES)
    assert reg.ts() is not None
    assert int(reg.ts()) == T
    assert reg.regs == NAMES
    for name in NAMES:
        code = meter.register(name).type_code
        assert reg.type_code(name) == code
        quantity = reg.pq_rate(name)
        assert quantity is not None
        assert quantity.to(UNITS[code]) == pytest.approx(meter.rate(name, T))
    rows = list(reg)
    assert len(rows) == 1
    assert rows[0].ts == T
    for name in NAMES:
        assert rows[0].regs[name] == meter.raw(name, T) - meter.raw(name, meter.epoch)
    # egauge-python asked for exactly the physical registers behind the names
    wanted = sorted({meter.register(n).idx for n in ("Grid", "Solar+", "Panel A/B", "Amps #1",
                                                     "Temp Büro", "Voltage L1", "Frequency",
                                                     "Apparent")})
    (data_call,) = [c for c in meter.calls_to("/register") if "time" in c.params]
    picked = set()
    for part in data_call.params["reg"].split("+"):
        low, _, high = part.partition(":")
        picked |= set(range(int(low), int(high or low) + 1))
    assert sorted(picked & {r.idx for r in meter.registers}) == wanted


def test_history_rows_across_levels(device: tuple[Device, SimMeter]) -> None:
    dev, meter = device
    reg = Register(dev, {"time": f"{T - 7260}:60:{T}"}, regs=["Grid"])
    rows = list(reg)
    assert rows[0].ts == T
    assert len({int(r.ts) for r in rows}) == len(rows)
    for row in rows:
        assert row.regs["Grid"] == meter.raw("Grid", int(row.ts)) - meter.raw("Grid", meter.epoch)


def test_local_values(device: tuple[Device, SimMeter]) -> None:
    dev, meter = device
    local = Local(dev, {"values": "", "energy": "", "rate": "", "cumul": "", "type": "",
                        "l": "all", "s": "all", "env": "all"})
    assert int(local.ts()) == T
    assert local.rate("L1") == pytest.approx(meter.local_rate("L1", T))
    assert local.rate("L2", Local.MEASUREMENT_FREQ) == pytest.approx(
        meter.local_rate("L2", T, "f"))
    assert local.cumul("S1") == meter.local_cumul("S1", T)
    assert local.type_code("Tpcb") == "T"
    assert local.rate("S1*L1", section=Local.SECTION_ENERGY) == pytest.approx(
        meter.local_rate("S1*L1", T, section="energy"))
    row = local.row(Local.METRIC_RATE)
    assert row.regs["S2"] == pytest.approx(meter.local_rate("S2", T))


def test_token_expiry_is_handled_by_a_fresh_login(device: tuple[Device, SimMeter],
                                                  clock: ManualClock) -> None:
    dev, meter = device
    assert dev.get("/config/net/hostname")["result"] == "eGauge-SIM0042"
    assert meter.logins == 1
    clock.advance(59)
    Register(dev, {"rate": ""}, regs=["Grid"])
    assert meter.logins == 1
    clock.advance(2)  # past beg + ltm
    reg = Register(dev, {"rate": "", "time": "now"}, regs=["Grid"])
    assert meter.logins == 2
    assert [r.regs["Grid"] for r in reg] == [
        meter.raw("Grid", T + 61) - meter.raw("Grid", meter.epoch)]
    statuses = [c.status for c in meter.calls if c.path != "/api/auth/login"]
    assert statuses.count(401) == 2  # the first request and the one after expiry
