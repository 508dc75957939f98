"""Fault switches, reboot and downtime of the simulated meter, over real sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.simulator import SimMeter, SimServer, ThreadedSimServer
from tests.support.simulator import ManualClock, sim_login
from tests.support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.integration

T = 1_700_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T + 0.5)


@pytest.fixture
def meter(clock: ManualClock) -> SimMeter:
    return SimMeter(password="pw", clock=clock, reboot_downtime_s=0.5)


@pytest.fixture
async def server(meter: SimMeter) -> AsyncIterator[SimServer]:
    async with SimServer([meter], control=True) as s:
        yield s


@pytest.fixture
async def client(server: SimServer, meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url_for(meter) + "/api", timeout=5) as c:
        await sim_login(c, "owner", "pw")
        meter.clear_calls()
        yield c


def refuses(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True


async def test_latency(client: httpx.AsyncClient, meter: SimMeter) -> None:
    meter.faults.latency_s = 0.3
    started = time.monotonic()
    assert (await client.get("/sys/sn")).status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_http_500_count_and_probability(client: httpx.AsyncClient,
                                              meter: SimMeter) -> None:
    meter.faults.http_500 = 2
    first = await client.put("/config/net/hostname", json="changed")
    assert (first.status_code, first.text) == (500, "Internal Server Error")
    assert (await client.get("/sys/sn")).status_code == 500
    assert (await client.get("/sys/sn")).status_code == 200
    assert meter.hostname == "eGauge-SIM0001"  # the failed PUT had no effect
    assert [c.status for c in meter.calls] == [500, 500, 200]
    meter.faults.http_500_probability = 1.0
    assert {(await client.get("/sys/sn")).status_code for _ in range(5)} == {500}
    meter.faults.http_500_probability = 0.0
    assert (await client.get("/sys/sn")).status_code == 200


async def test_broken_json(client: httpx.AsyncClient, meter: SimMeter) -> None:
    meter.faults.broken_json = 1
    broken = await client.get("/register?time=now")
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.content)
    assert "ranges" in (await client.get("/register?time=now")).json()


async def test_hang_and_reset(server: SimServer, meter: SimMeter,
                              client: httpx.AsyncClient) -> None:
    meter.faults.hang = 1
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/sys/sn", timeout=0.3)
    meter.faults.reset = 1
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await client.get("/sys/sn")
    assert (await client.get("/sys/sn")).status_code == 200
    assert [c.status for c in meter.calls] == [0, 0, 200]


async def test_go_down_refuses_connections_then_returns(server: SimServer, meter: SimMeter,
                                                        client: httpx.AsyncClient) -> None:
    url = server.url_for(meter)
    meter.go_down(0.5)
    assert meter.is_down
    assert refuses(url)
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):
        await client.get("/sys/sn")  # a kept-alive connection may be cut mid-request
    with pytest.raises(httpx.ConnectError):
        await client.get("/sys/sn")
    await async_wait_until(lambda: not refuses(url), timeout=5, what="the meter to come back")
    assert server.url_for(meter) == url  # same port again
    assert (await client.get("/sys/sn")).status_code == 200  # tokens survive a plain outage


async def test_reboot_loses_tokens_and_fine_history(server: SimServer, meter: SimMeter,
                                                    client: httpx.AsyncClient,
                                                    clock: ManualClock) -> None:
    before = (await client.get("/register?reg=3&time=now-30")).json()
    assert before["ranges"][0]["ts"] == str(T - 30)
    assert (await client.post("/cmd/reboot")).json() == {"status": "OK"}
    url = server.url_for(meter)
    assert refuses(url)
    await async_wait_until(lambda: not refuses(url), timeout=5, what="the reboot to end")
    assert (await client.get("/sys/sn")).status_code == 401
    await sim_login(client, "owner", "pw")
    boot = (await client.get("/sys/boot")).json()["result"]
    assert boot["reason"] == "software reset"
    assert (await client.get("/sys/uptime")).json()["result"] == 0
    now_row = (await client.get("/register?reg=3&time=now")).json()["ranges"][0]["ts"]
    assert now_row == str(T // 60 * 60)  # no 1-second row yet: the minute row
    clock.advance(5)
    later = (await client.get("/register?reg=3&time=now,now-30")).json()["ranges"]
    assert [r["ts"] for r in later] == [str(T + 5), str((T - 25) // 60 * 60)]


async def test_control_endpoint(server: SimServer, meter: SimMeter,
                                client: httpx.AsyncClient) -> None:
    url = server.url_for(meter)
    async with httpx.AsyncClient(base_url=url) as ctl:
        set_faults = await ctl.post("/__sim__/faults", json={
            "http_500": 1, "latency_s": 0.0, "revoke_tokens": True,
            "registers": {"order": ["Apparent"], "remove": ["Frequency"]}})
        assert set_faults.json()["faults"]["http_500"] == 1
        assert (await client.get("/sys/sn")).status_code == 500
        assert (await client.get("/sys/sn")).status_code == 401  # tokens were revoked
        state = (await ctl.get("/__sim__/state")).json()
        assert state["registers"][0] == {"name": "Apparent", "idx": 0, "type": "S"}
        assert "Frequency" not in [r["name"] for r in state["registers"]]
        bad = await ctl.post("/__sim__/faults", json={"hang": 1, "nope": 2})
        assert bad.status_code == 400
        assert meter.faults.hang == 0  # nothing of a rejected request applies
        calls = (await ctl.get("/__sim__/calls")).json()
        assert [c["status"] for c in calls] == [500, 401]
        assert (await ctl.delete("/__sim__/calls")).json() == {"status": "OK"}
        assert meter.calls == []
        assert (await ctl.post("/__sim__/faults", json={"down_s": 0.3})).status_code == 200
        assert refuses(url)
        await async_wait_until(lambda: not refuses(url), timeout=5, what="the meter")


async def test_control_endpoint_renames_and_retypes_in_place(server: SimServer, meter: SimMeter,
                                                             client: httpx.AsyncClient) -> None:
    before = {r.name: r for r in meter.registers}
    async with httpx.AsyncClient(base_url=server.url_for(meter)) as ctl:
        done = await ctl.post("/__sim__/faults", json={"registers": {
            "rename": {"Grid": "Mains"}, "retype": {"Voltage L1": "I"}}})
        assert done.status_code == 200, done.text
        clash = await ctl.post("/__sim__/faults", json={"registers": {
            "rename": {"Mains": "Solar+"}}})
        assert clash.status_code == 400  # two registers of one name
    mains = meter.register("Mains")
    assert (mains.idx, mains.did, mains.wave) == (before["Grid"].idx, before["Grid"].did,
                                                  before["Grid"].wave)
    assert meter.register("use").formula == (("+", "Mains"), ("+", "Solar+"))
    assert meter.register("Voltage L1").type_code == "I"
    info = (await client.get("/register")).json()["registers"]
    assert {r["name"]: r["type"] for r in info}["Voltage L1"] == "I"
    assert "Grid" not in {r["name"] for r in info}


async def test_control_endpoint_is_off_by_default() -> None:
    meter = SimMeter()
    async with SimServer([meter]) as server, httpx.AsyncClient() as ctl:
        reply = await ctl.post(server.url_for(meter) + "/__sim__/faults", json={"http_500": 5})
        assert reply.status_code == 404
    assert meter.faults.http_500 == 0


def test_go_down_from_another_thread(
        threaded_simulator: Callable[..., ThreadedSimServer]) -> None:
    meter = SimMeter()
    sim = threaded_simulator([meter])
    url = sim.url_for(meter)
    assert httpx.get(url + "/api/auth/unauthorized").status_code == 401
    meter.go_down(0.5)
    assert refuses(url)  # closed before go_down returned
    wait_until(lambda: not refuses(url), timeout=5, what="the meter to come back")
    assert httpx.get(url + "/api/auth/unauthorized").status_code == 401
