"""/api/log of the simulated meter over real HTTP: system, kernel and Lua logs, the alert
log (alerts appearing with the clock and raised by a test, filters, acknowledging,
deleting) and the save right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.simulator import SimMeter
from tests.support.simulator import (
    SIM_PASSWORD,
    SIM_USERNAME,
    ManualClock,
    served_client,
    sim_login,
)

pytestmark = pytest.mark.integration

T = 1_700_000_000
PERIOD = 600


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T + 0.25)


@pytest.fixture
def meter(clock: ManualClock) -> SimMeter:
    return SimMeter(password=SIM_PASSWORD, clock=clock, alert_period_s=PERIOD,
                    token_lifetime_s=86_400)


@pytest.fixture
async def client(meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with served_client(meter) as c:
        yield c


async def alerts(client: httpx.AsyncClient, **params: str) -> Any:
    reply = await client.get("/log/alert", params=params)
    assert reply.status_code == 200
    return reply.json()


async def test_system_kernel_and_lua_logs(client: httpx.AsyncClient, meter: SimMeter,
                                          clock: ManualClock) -> None:
    system = (await client.get("/log/system")).json()["log"]
    assert system
    assert all(set(line) == {"msg"} for line in system)
    assert any("SIM0001" in line["msg"] for line in system)
    kernel = (await client.get("/log/kernel")).json()["log"]
    assert all(set(e) == {"prio", "ts", "msg"} and isinstance(e["ts"], str) for e in kernel)
    newest = max(float(e["ts"]) for e in kernel)
    assert (await client.get("/log/kernel", params={"after": str(newest)})).json() == {
        "log": []}
    lua = (await client.get("/log/lua/main")).json()["log"]
    assert len(lua) == 100  # the newest lines of a script running for days
    clock.advance(180)
    later = (await client.get("/log/lua/main")).json()["log"]
    ticks = [int(e["msg"].removeprefix("tick ")) for e in later]
    assert ticks == list(range(ticks[0], ticks[0] + 100))  # a line a minute
    assert later[-4] == lua[-1]  # three minutes on: three lines more
    assert float(later[-1]["ts"]) == (T + 180) // 60 * 60
    after = (await client.get("/log/lua/main", params={"after": later[-2]["ts"]})).json()
    assert after["log"] == later[-1:]
    assert (await client.get("/log/lua/nope")).json() == {"error": "Unknown script: 'nope'."}
    meter.reboot_state()  # a reboot logs its boot lines again
    await sim_login(client)  # the reboot revoked the token
    rebooted = (await client.get("/log/kernel", params={"after": str(newest)})).json()["log"]
    assert [e["msg"] for e in rebooted] == [e["msg"] for e in kernel]
    assert min(float(e["ts"]) for e in rebooted) == pytest.approx(T + 180.25)
    assert len((await client.get("/log/system")).json()["log"]) == 2 * len(system)


async def test_alerts_appear_over_time(client: httpx.AsyncClient, meter: SimMeter,
                                       clock: ManualClock) -> None:
    assert await alerts(client) == {"drops": 0, "log": []}
    clock.advance(PERIOD - 1)
    assert meter.alerts == []
    assert (await alerts(client))["log"] == []
    clock.advance(1)
    assert [(a.name, a.count) for a in meter.alerts] == [("Periodic alert", 1)]
    log = (await alerts(client))["log"]
    assert len(log) == 1
    first = log[0]
    assert (first["name"], first["count"], first["acked"]) == ("Periodic alert", 1, False)
    assert float(first["first"]) == float(first["last"]) == pytest.approx(T + 0.25 + PERIOD)
    assert set(first) == {"id", "acked", "prio", "count", "first", "last", "name", "detail",
                          "reported"}
    clock.advance(2 * PERIOD)
    again = (await alerts(client))["log"][0]
    assert (again["id"], again["count"]) == (first["id"], 3)
    assert float(again["last"]) == pytest.approx(T + 0.25 + 3 * PERIOD)
    assert float(again["first"]) == float(first["first"])


async def test_raised_alerts_filters_ack_and_delete(client: httpx.AsyncClient,
                                                    meter: SimMeter,
                                                    clock: ManualClock) -> None:
    raised = [meter.raise_alert("Grid import high", "above 5 kW", 5),
              meter.raise_alert("Door open", "", 1)]
    clock.advance(10)
    raised.append(meter.raise_alert("Low voltage", "L1 below 110 V", 7))
    log = (await alerts(client))["log"]
    assert [(a["name"], a["detail"], a["prio"], a["count"]) for a in log] == [
        ("Grid import high", "above 5 kW", 5, 1), ("Door open", "", 1, 1),
        ("Low voltage", "L1 below 110 V", 7, 1)]
    assert [a["id"] for a in log] == [a.id for a in raised]
    assert [a["name"] for a in (await alerts(client, min_prio="5"))["log"]] == [
        "Grid import high", "Low voltage"]
    assert [a["name"] for a in (await alerts(client, after=str(T + 5)))["log"]] == [
        "Low voltage"]
    ids = f"{raised[0].id},{raised[2].id}"
    assert [a["name"] for a in (await alerts(client, ids=ids))["log"]] == [
        "Grid import high", "Low voltage"]
    ack = await client.post("/log/alert", json={"ids": [raised[1].id]})
    assert ack.json() == {"status": "OK"}
    assert [a["name"] for a in (await alerts(client, acked="1"))["log"]] == ["Door open"]
    assert len((await alerts(client, acked="0"))["log"]) == 2
    meter.raise_alert("Door open", "", 1)  # it happens again: counted, unacknowledged
    [door] = [a for a in (await alerts(client))["log"] if a["name"] == "Door open"]
    assert (door["count"], door["acked"]) == (2, False)
    assert (await client.post("/log/alert", json={"ids": [999]})).json() == {
        "error": "Unknown alert id: 999."}
    assert (await client.delete("/log/alert", params={"ids": str(raised[0].id)})).json() == {
        "status": "OK"}
    assert len((await alerts(client))["log"]) == 2
    assert (await client.post("/log/alert")).json() == {"status": "OK"}  # no body: all
    assert all(a["acked"] for a in (await alerts(client))["log"])
    assert (await client.delete("/log/alert")).json() == {"status": "OK"}
    assert (await alerts(client))["log"] == []


@pytest.mark.parametrize(("params", "error"), [
    ({"min_prio": "9"}, "Invalid min_prio: '9'."),
    ({"ids": "1,x"}, "Invalid ids: '1,x'."),
    ({"after": "soon"}, "Invalid after: 'soon'."),
    ({"acked": "maybe"}, "Invalid acked: 'maybe'."),
    ({"limit": "3"}, "Invalid query option: limit."),
])
async def test_bad_alert_queries(client: httpx.AsyncClient, params: dict[str, str],
                                 error: str) -> None:
    assert await alerts(client, **params) == {"error": error}


async def test_the_log_needs_the_save_right() -> None:
    meter = SimMeter(password=SIM_PASSWORD, rights=("ctrl",))
    async with served_client(meter, SIM_USERNAME, SIM_PASSWORD) as client:
        for path in ("/log/system", "/log/kernel", "/log/alert", "/log/lua/main"):
            reply = await client.get(path)
            assert reply.status_code == 401, path
            assert reply.json()["error"] == "Authentication required."
        assert (await client.delete("/log/alert")).status_code == 401
