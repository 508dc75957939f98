"""/api/ctid of the simulated meter over real HTTP: stored info, the scan handshake (POST,
then GET ?tid= until tid and port match), flashing, /local while active, PUT, DELETE,
errors and the save right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.simulator import SimMeter
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME, ManualClock, served_client

pytestmark = pytest.mark.integration

T = 1_700_000_000 + 13 * 3600


@pytest.fixture
def meter() -> SimMeter:
    return SimMeter(password=SIM_PASSWORD, clock=ManualClock(T + 0.25))


@pytest.fixture
async def client(meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with served_client(meter) as c:
        yield c


async def local_state(client: httpx.AsyncClient) -> tuple[str, Any]:
    body = (await client.get("/local?values&energy&rate")).json()
    return body["ctid"], body


async def test_stored_info(client: httpx.AsyncClient) -> None:
    info = (await client.get("/ctid")).json()["info"]
    assert [i["port"] for i in info] == [1, 2, 3, 4]
    first = info[0]
    assert set(first) >= {"port", "polarity", "version", "mfgid", "model", "sn", "k", "rsrc",
                          "rload", "params"}
    assert (await client.get("/ctid/1")).json() == first
    assert (await client.get("/ctid/7")).json() == {}  # nothing stored there


async def test_scan_handshake_and_local_while_active(client: httpx.AsyncClient,
                                                     meter: SimMeter) -> None:
    idle, before = await local_state(client)
    assert idle == "idle"
    assert before["values"]["S1"]["rate"]["n"] > 0
    started = await client.post("/ctid/3", json={"op": "scan", "tid": 4242, "polarity": "-"})
    assert started.json() == {"status": "OK"}
    state, during = await local_state(client)
    assert state == "active"
    assert {m for e in during["values"].values() for m in e["rate"].values()} == {0.0}
    assert {e["rate"] for e in during["energy"].values()} == {0.0}
    polls = []
    for _ in range(5):
        reply = (await client.get("/ctid/3", params={"tid": "4242"})).json()
        polls.append(reply)
        if reply.get("tid") == 4242 and reply.get("port") == 3:
            break
    assert len(polls) == meter.ctid.scan_polls  # it takes a little while
    assert "tid" not in polls[0]
    result = polls[-1]
    assert result["polarity"] == "-"
    assert result["model"] == meter.ctid.sensors[3]["model"]
    assert (await client.get("/ctid/3")).json() == {k: v for k, v in result.items()
                                                    if k != "tid"}  # the scan stored it
    assert (await local_state(client))[0] == "idle"


async def test_a_port_without_a_ctid_sensor_never_answers_the_scan(
        client: httpx.AsyncClient) -> None:
    await client.post("/ctid/5", json={"op": "scan", "tid": 7, "polarity": "+"})
    for _ in range(5):
        assert "tid" not in (await client.get("/ctid/5", params={"tid": "7"})).json()
    assert (await local_state(client))[0] == "active"
    assert (await client.post("/ctid/stop", json={})).json() == {"status": "OK"}
    assert (await local_state(client))[0] == "idle"


async def test_flash_until_stopped(client: httpx.AsyncClient) -> None:
    assert (await client.post("/ctid/2", json={"op": "flash", "tid": 99, "polarity": "-"})
            ).json() == {"status": "OK"}
    assert (await local_state(client))[0] == "active"
    assert (await local_state(client))[0] == "active"
    await client.post("/ctid/stop", json={})
    assert (await local_state(client))[0] == "idle"


async def test_put_and_delete(client: httpx.AsyncClient) -> None:
    info = (await client.get("/ctid/1")).json()
    moved = {**info, "port": 9, "polarity": "-"}
    assert (await client.put("/ctid/9", json=moved)).json() == {"status": "OK"}
    assert (await client.get("/ctid/9")).json() == moved
    assert (await client.delete("/ctid/9")).json() == {"status": "OK"}
    assert (await client.get("/ctid/9")).json() == {}
    assert (await client.put("/ctid", json={"info": [info]})).json() == {"status": "OK"}
    assert [i["port"] for i in (await client.get("/ctid")).json()["info"]] == [1]
    assert (await client.delete("/ctid")).json() == {"status": "OK"}
    assert (await client.get("/ctid")).json() == {"info": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "error"),
    [
        ("POST", "/ctid/1", {"op": "erase", "tid": 1}, 'Invalid CTid request: op must be "scan" '
                                                       'or "flash".'),
        ("POST", "/ctid/1", {"op": "scan", "tid": 0}, "Invalid CTid request: tid must be a "
                                                      "number from 1 to 2^32-1."),
        ("POST", "/ctid/1", {"op": "scan", "tid": 5, "polarity": "x"},
         'Invalid CTid request: polarity must be "+" or "-".'),
        ("POST", "/ctid/0", {"op": "scan", "tid": 5}, "Invalid port number: '0'."),
        ("GET", "/ctid/S1", None, "Invalid port number: 'S1'."),
        ("PUT", "/ctid/2", {"port": 3}, "Invalid CTid info: port must be 2."),
        ("PUT", "/ctid", {"info": {}}, 'Invalid CTid info: expected {"info": [...]}.'),
    ],
)
async def test_errors(client: httpx.AsyncClient, method: str, path: str, body: Any,
                      error: str) -> None:
    reply = await client.request(method, path, json=body)
    assert (reply.status_code, reply.json()) == (200, {"error": error})


async def test_everything_but_get_needs_the_save_right() -> None:
    meter = SimMeter(password=SIM_PASSWORD, rights=())
    async with served_client(meter, SIM_USERNAME, SIM_PASSWORD) as client:
        assert (await client.get("/ctid")).status_code == 200
        for method, path in (("POST", "/ctid/1"), ("PUT", "/ctid/1"), ("DELETE", "/ctid"),
                             ("POST", "/ctid/stop")):
            reply = await client.request(method, path, json={"op": "flash", "tid": 1})
            assert reply.status_code == 401, (method, path)
            assert reply.json()["error"] == "Authentication required."
    assert meter.ctid.operation is None
    assert len(meter.ctid.stored) == 4
