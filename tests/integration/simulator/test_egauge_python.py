"""Fidelity of the simulator as seen by eGauge's own client, egauge-python 0.9.17
(synchronous, requests-based, so the simulator runs in a background thread): ``Register``,
``Local``, ``Capture`` and ``CTidInfo``.

Which reactive-power code which client needs: egauge-python's unit table (generated from
eGauge's own tables) knows reactive power only as ``PQ``; for a register typed with the
spec's ``var`` it reads the rows but ``pq_rate()`` raises ``KeyError: 'var'``. So
egauge-python needs the simulator's default, ``reactive_code="PQ"``. (egauge-async needs
``var``: see test_egauge_async.py.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from egauge import webapi
from egauge.webapi.device import Device, Local, Register
from egauge.webapi.device.capture import Capture, CaptureBusyError, TriggerMode
from egauge.webapi.device.ctid_info import CTidInfo, PortInfo
from egauge.webapi.device.local import CTidStatus

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.simulator import ManualClock

pytestmark = pytest.mark.integration

T = 1_700_000_000
NAMES = ["Grid", "Solar+", "Panel A/B", "Amps #1", "Temp Büro", "Voltage L1", "Frequency",
         "Reactive", "Apparent", "use"]
UNITS = {"P": "W", "I": "A", "T": "°C", "V": "V", "F": "Hz", "S": "VA", "PQ": "var"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T + 0.5)


@pytest.fixture(params=["PQ", "var"])
def device(request: pytest.FixtureRequest, threaded_simulator: Callable[..., ThreadedSimServer],
           clock: ManualClock) -> tuple[Device, SimMeter]:
    """The meter in both reactive-power modes: everything but one rate reads alike."""
    meter = SimMeter("SIM0042", "owner", "s3cret", token_lifetime_s=60, clock=clock,
                     reactive_code=request.param)
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
        if code == "var":  # not in egauge-python's unit table: see the module docstring
            with pytest.raises(KeyError, match="var"):
                reg.pq_rate(name)
            continue
        quantity = reg.pq_rate(name)
        assert quantity is not None
        assert quantity.to(UNITS[code]) == pytest.approx(meter.rate(name, T))
    rows = list(reg)
    assert len(rows) == 1
    assert rows[0].ts == T
    for name in NAMES:
        assert rows[0].regs[name] == meter.raw(name, T) - meter.raw(name, meter.epoch)
    # egauge-python asked for exactly the physical registers behind the names
    wanted = sorted({meter.register(n).idx for n in NAMES if not meter.register(n).virtual})
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


def test_local_reports_the_ctid_status(device: tuple[Device, SimMeter]) -> None:
    dev, meter = device
    local = Local(dev, {"values": "", "rate": ""})
    assert local.ctid_status() == CTidStatus.IDLE
    info = CTidInfo(dev)
    info.flash(2)
    flashing = Local(dev, {"values": "", "rate": ""})
    assert flashing.ctid_status() == CTidStatus.ACTIVE
    assert flashing.rate("S1") == 0.0
    info.stop()
    assert Local(dev, {"values": "", "rate": ""}).ctid_status() == CTidStatus.IDLE
    assert meter.ctid.operation is None


def test_capture_acquires_a_sine_per_channel(device: tuple[Device, SimMeter]) -> None:
    dev, meter = device
    cap = Capture(dev)
    assert set(cap.available_channels) == {"L1", "L2", "S1", "S2", "S3", "S4", "S5"}
    assert (cap.channel_unit("L1"), cap.channel_unit("S1")) == ("V", "A")
    cap.channels = {"L1", "S1"}
    result = cap.acquire(duration=0.1)
    assert int(result.unix_ts) == T
    for name in ("L1", "S1"):
        samples = result.samples[name]
        assert len(samples.ys) == 400
        peak = 2**0.5 * meter.local_rate(name, T)
        assert max(samples.ys) == pytest.approx(peak, rel=0.005)
        pairs = list(zip(samples.ts, samples.ys, strict=True))
        ups = [t0 + (t1 - t0) * -y0 / (y1 - y0)  # rising zero crossings, interpolated
               for (t0, y0), (t1, y1) in itertools.pairwise(pairs) if y0 < 0 <= y1]
        freq = (len(ups) - 1) / (ups[-1] - ups[0])
        assert freq == pytest.approx(meter.local_rate("L1", T, "f"), abs=0.05)
    assert result.trigger_point is None


def test_capture_trigger_progress_busy_and_reset(device: tuple[Device, SimMeter]) -> None:
    dev, _ = device
    cap = Capture(dev)
    cap.channels = {"L1"}
    cap.trigger_channel, cap.trigger_mode, cap.trigger_level = "L1", TriggerMode.RISING, 0.0
    cap.pretrigger = 0.001
    cookie = cap.start(duration=0.02)
    assert 0 < cap.progress(cookie) < 1
    assert cap.progress(cookie) == 1.0
    result = cap.result(cookie)
    assert not isinstance(result, float)
    assert result.trigger_point is not None
    assert result.trigger_point.channel == "L1"
    waiting = Capture(dev)
    waiting.trigger_channel, waiting.trigger_mode = "L1", TriggerMode.ABOVE
    waiting.trigger_level = 1000.0  # never: the capture stays armed
    waiting.start(duration=0.02)
    with pytest.raises(CaptureBusyError):
        Capture(dev).start(duration=0.02)
    waiting.reset()
    assert isinstance(Capture(dev).start(duration=0.02), int)


def test_ctid_scan_list_get_delete_and_put(device: tuple[Device, SimMeter]) -> None:
    dev, meter = device
    ctid = CTidInfo(dev)
    found = ctid.scan(1, "+")
    assert isinstance(found, PortInfo)
    assert found.table is not None
    assert found.polarity == "+"
    assert found.model_name() == meter.ctid.sensors[1]["model"]
    assert found.short_mfg_name() == "Magnelab"
    assert found.serial_number() == str(meter.ctid.sensors[1]["sn"])
    assert [p.port for p in ctid] == [1, 2, 3, 4]
    stored = ctid.get(3)
    assert stored is not None
    assert stored.table is not None
    ctid.delete(3)
    assert ctid.get(3) is None
    ctid.put(stored)
    again = ctid.get(3)
    assert again is not None
    assert again.as_dict() == stored.as_dict()
