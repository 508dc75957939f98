"""A simulated reboot that resets the cumulative values, over real sockets: through the
WebAPI's ``/cmd/reboot`` and through the simulator's control endpoint ``/__sim__/``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.simulator import SimMeter, SimServer
from tests.integration.simulator.test_faults import refuses
from tests.support.simulator import ManualClock, sim_login
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

T = 1_700_000_000 + 13 * 3600  # 2023-11-15 11:13:20 UTC: the array produces


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T + 0.5)


@pytest.fixture
def meter(clock: ManualClock) -> SimMeter:
    return SimMeter(password="pw", clock=clock, reboot_downtime_s=0.0, fine_history_s=120)


@pytest.fixture
def twin(clock: ManualClock) -> SimMeter:
    """The same meter, never rebooted: what the counters would read without the reset."""
    return SimMeter(password="pw", clock=clock)


@pytest.fixture
async def server(meter: SimMeter) -> AsyncIterator[SimServer]:
    async with SimServer([meter], control=True) as s:
        yield s


@pytest.fixture
async def client(server: SimServer, meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url_for(meter) + "/api", timeout=5) as c:
        await sim_login(c, "owner", "pw")
        yield c


async def test_cmd_reboot_with_a_cumulative_reset(client: httpx.AsyncClient, meter: SimMeter,
                                                  twin: SimMeter, clock: ManualClock) -> None:
    meter.reboot_resets_cumulative = True
    assert (await client.post("/cmd/reboot")).json() == {"status": "OK"}
    clock.advance(10)
    await sim_login(client, "owner", "pw")  # the reboot revoked the token
    body = (await client.get("/register?reg=3+5&raw&rate&time=now-20:1:now")).json()
    fine, coarse = body["ranges"]
    # 1-second rows only since the reboot; older seconds fall back to their minute row
    assert (fine["ts"], fine["delta"], len(fine["rows"])) == (str(T + 10), 1, 10)
    assert coarse["ts"] == str(T // 60 * 60)
    assert len(coarse["rows"]) == 1
    for i, row in enumerate(fine["rows"]):
        t = T + 10 - i
        assert row == [str(twin.raw(n, t) - twin.raw(n, T)) for n in ("Grid", "Solar+")]
    assert coarse["rows"][0] == [str(twin.raw(n, T // 60 * 60)) for n in ("Grid", "Solar+")]
    assert int(fine["rows"][-1][1]) == round(twin.rate("Solar+", T + 1))  # from 0 on
    rates = {r["name"]: r["rate"] for r in body["registers"]}
    assert rates == {n: twin.rate(n, T + 10) for n in ("Grid", "Solar+")}  # unaffected


async def test_control_endpoint_reboot_rewind_alert_and_raw(
        server: SimServer, meter: SimMeter, twin: SimMeter, clock: ManualClock) -> None:
    url = server.url_for(meter)
    async with httpx.AsyncClient(base_url=url, timeout=5) as ctl:
        reply = await ctl.post("/__sim__/reboot", json={"downtime_s": 0.3, "rewind_s": 600})
        assert reply.json() == {"status": "OK", "first_second": T + 1}
        assert refuses(url)
        await async_wait_until(lambda: not refuses(url), timeout=5, what="the meter")
        clock.advance(5)
        raw = (await ctl.get("/__sim__/raw", params={"name": "Grid", "from": str(T - 2),
                                                     "to": str(T + 3)})).json()
        offset = twin.raw("Grid", T) - twin.raw("Grid", T - 600)
        assert raw["raw"] == [twin.raw("Grid", t) - (offset if t > T else 0)
                              for t in range(T - 2, T + 4)]
        assert raw["changes"] == meter.raw_changes("Grid", T - 2, T + 3)
        assert raw["changes"][2] == twin.raw("Grid", T + 1) - twin.raw("Grid", T) - offset
        for bad in ({"reset_cumulative": True, "rewind_s": 5}, {"rewind_s": 1.5},
                    {"downtime_s": -1}, {"reboot": "now"}):
            assert (await ctl.post("/__sim__/reboot", json=bad)).status_code == 400
        alert = await ctl.post("/__sim__/alert", json={"name": "Door open", "prio": 6})
        assert alert.json()["status"] == "OK"
        assert [(a.name, a.prio) for a in meter.alerts] == [("Door open", 6)]
        assert (await ctl.post("/__sim__/alert", json={"name": "x", "prio": 9})
                ).status_code == 400
        assert (await ctl.get("/__sim__/raw", params={"name": "Nope", "from": "1", "to": "2"})
                ).status_code == 400
