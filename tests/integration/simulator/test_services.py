"""/local, /sys, /config, /cmd and /ctrl of the simulated meter over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD, ManualClock, served_client
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

T = 1_700_000_000


@pytest.fixture
def meter() -> SimMeter:
    return SimMeter(password=SIM_PASSWORD, clock=ManualClock(T + 0.5))


@pytest.fixture
async def client(meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with served_client(meter) as c:
        yield c


async def test_local_defaults_and_sections(client: httpx.AsyncClient, meter: SimMeter) -> None:
    body = (await client.get("/local")).json()
    assert set(body["values"]) == {"L1", "L2", "S1", "S2", "S3", "S4", "S5", "Tpcb"}
    assert "energy" not in body
    l1 = body["values"]["L1"]
    assert set(l1) == {"type", "rate"}  # default metrics: rate and type
    assert l1["type"] == "V"
    assert l1["rate"] == {m: meter.local_rate("L1", T, m) for m in "nmf"}
    assert body["values"]["Tpcb"] == {"type": "T", "rate": {"n": meter.local_rate("Tpcb", T)}}
    full = (await client.get("/local?values&energy&apparent&cumul&rate&normal&s=S1:S2")).json()
    assert set(full["values"]) == {"S1", "S2"}
    assert full["values"]["S1"] == {"rate": {"n": meter.local_rate("S1", T)},
                                    "cumul": {"n": str(meter.local_cumul("S1", T))}}
    assert full["energy"]["S1*L1"] == {
        "rate": meter.local_rate("S1*L1", T, section="energy"),
        "cumul": str(meter.local_cumul("S1*L1", T, section="energy"))}
    assert full["apparent"]["S2*L2"]["cumul"] == str(
        meter.local_cumul("S2*L2", T, section="apparent"))
    lines = (await client.get("/local?l=L1,l12&env=tpcb")).json()
    assert set(lines["values"]) == {"L1", "Tpcb"}  # L1-L2 is not wired on this meter
    bad = (await client.get("/local?l=L1;DROP")).json()
    assert "error" in bad


async def test_sys_tree_paths_filter_and_depth(client: httpx.AsyncClient,
                                               meter: SimMeter) -> None:
    whole = (await client.get("/sys")).json()["result"]
    assert whole["sn"] == "SIM0001"
    assert whole["model"] == "EG4115"
    assert isinstance(whole["time"], str)
    assert float(whole["time"]) == pytest.approx(T + 0.5)
    assert isinstance(whole["uptime"], (int, float))
    assert set(whole["version"]) == {"firmware", "hardware", "kernel"}
    assert [lv["interval"] for lv in whole["db"]["level"]] == [1000, 60000, 900000, 86400000]
    assert whole["db"]["level"][0]["volatile"] is True
    assert (await client.get("/sys/sn")).json() == {"result": "SIM0001"}
    assert (await client.get("/sys/version/firmware")).json() == {
        "result": whole["version"]["firmware"]}
    picked = (await client.get("/sys", params={"filter": "{model,sn}"})).json()
    assert picked == {"result": {"model": "EG4115", "sn": "SIM0001"}}
    shallow = (await client.get("/sys/version?max-depth=1")).json()
    assert shallow == {"result": ["firmware", "hardware", "kernel"]}
    missing = await client.get("/sys/nothing")
    assert (missing.status_code, missing.json()) == (200, {"error": "Unknown path: /nothing."})


async def test_config_etag_and_if_match(client: httpx.AsyncClient, meter: SimMeter) -> None:
    got = await client.get("/config/net/hostname")
    assert got.json() == {"result": "eGauge-SIM0001"}
    etag = got.headers["etag"]
    ok = await client.put("/config/net/hostname", json="meter-7", headers={"If-Match": etag})
    assert ok.json() == {"status": "OK"}
    assert meter.hostname == "meter-7"
    stale = await client.put("/config/net/hostname", json="meter-8", headers={"If-Match": etag})
    assert (stale.status_code, stale.json()) == (412, {"error": "Precondition failed."})
    assert meter.hostname == "meter-7"
    fresh = (await client.get("/config")).headers["etag"]
    assert fresh != etag
    merged = await client.post("/config/var/global", json={"site": "north"},
                               headers={"If-Match": fresh})
    assert merged.json() == {"status": "OK"}
    assert (await client.get("/config/var/global/site")).json() == {"result": "north"}
    unknown = await client.put("/config/net/nope", json="x")
    assert (unknown.status_code, unknown.json()) == (200, {"error": "Unknown path: /net/nope."})
    not_json = await client.put("/config/net/hostname", content=b"meter-9")
    assert not_json.json() == {"error": "Invalid JSON body."}
    assert (await client.delete("/config/net/hostname")).json() == {"status": "OK"}
    assert meter.hostname == "eGauge-SIM0001"
    user = (await client.get("/config/user/owner")).json()["result"]
    assert "hash" not in user
    regs = (await client.get("/config/register/physical/Grid")).json()["result"]
    assert regs["did"] == meter.register("Grid").did


async def test_commands(client: httpx.AsyncClient, meter: SimMeter) -> None:
    assert (await client.post("/cmd/clear", json="excess")).json() == {"status": "OK"}
    assert "error" in (await client.post("/cmd/clear", json="everything")).json()
    assert (await client.post("/cmd/set-time", json=str(T + 100))).json() == {"status": "OK"}
    assert meter.latest() == T + 100
    listing = (await client.post("/cmd/update", json={"action": "list", "target": "fw"})).json()
    assert set(listing) == {"version", "minimum"}
    assert len((await client.post("/cmd/test-email", json={"address": "a@b"})).json()["token"]
               ) == 32
    assert "error" in (await client.post("/cmd/launch-rockets", json={})).json()
    assert (await client.get("/cmd/clear")).status_code == 405


async def test_ctrl_call_pending_then_result(client: httpx.AsyncClient, meter: SimMeter) -> None:
    devices = (await client.get("/ctrl/device")).json()["result"]
    assert [(d["model"], d["interface"]) for d in devices] == [("PRM3", ["relay"])]
    filtered = await client.get("/ctrl/device", params={"attrs": '{"model":"prm3","sn":"x"}'})
    assert filtered.json() == {"result": []}
    methods = (await client.get("/ctrl/interface/relay/method?filter={name}")).json()["result"]
    assert [m["name"] for m in methods] == ["close", "open", "mask", "close_mask", "open_mask",
                                            "state"]
    meter.controller.pending_polls = 2
    call = await client.post("/ctrl/call", json={"attrs": {"mfg": "egauge", "model": "prm3"},
                                                 "method": "relay.close", "args": [1]})
    tid = call.json()["result"]["tid"]
    assert isinstance(tid, int)
    for _ in range(2):
        assert (await client.get(f"/ctrl/call/{tid}")).json() == {
            "error": "EAGAIN: Call is pending."}
        assert meter.relays == (False, False, False)
    assert (await client.get(f"/ctrl/call/{tid}")).json() == {}  # close returns nothing
    assert meter.relays == (False, True, False)
    meter.controller.pending_polls = 0
    for method, arg in (("mask", 0b101), ("open_mask", 0b001), ("close_mask", 0b010)):
        tid = (await client.post("/ctrl/call", json={"method": method, "args": [arg]})
               ).json()["result"]["tid"]
        await client.get(f"/ctrl/call/{tid}")
    assert meter.relay_mask == 0b110
    tid = (await client.post("/ctrl/call", json={"method": "relay.state", "args": []})
           ).json()["result"]["tid"]
    assert (await client.get(f"/ctrl/call/{tid}")).json() == {"result": 0b110}
    bad = await client.post("/ctrl/call", json={"method": "relay.close", "args": ["one"]})
    assert bad.json() == {"error": "EINVAL: close takes (u) arguments."}
    nodev = await client.post("/ctrl/call", json={"attrs": {"model": "PRM9"},
                                                   "method": "close", "args": [0]})
    assert nodev.json() == {"error": "ENODEV: No matching device."}
    tid = (await client.post("/ctrl/call", json={"method": "open", "args": [7]})
           ).json()["result"]["tid"]
    assert (await client.get(f"/ctrl/call/{tid}")).json() == {"error": "EINVAL: No relay 7."}


async def test_ctrl_pending_time(client: httpx.AsyncClient, meter: SimMeter) -> None:
    meter.controller.pending_polls = 0
    meter.controller.pending_s = 0.3
    tid = (await client.post("/ctrl/call", json={"method": "close", "args": [0]})
           ).json()["result"]["tid"]
    assert (await client.get(f"/ctrl/call/{tid}")).json()["error"].startswith("EAGAIN:")

    async def done() -> bool:
        return (await client.get(f"/ctrl/call/{tid}")).json() == {}

    await async_wait_until(done, timeout=5, what="the call to finish")
    assert meter.relays[0]


async def test_unknown_service_and_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nothing")).status_code == 404
    assert (await client.post("/register", json={})).status_code == 405
    assert (await client.put("/sys/sn", json="x")).status_code == 405


async def test_raw_http_keep_alive_pipelining_and_bad_requests(meter: SimMeter) -> None:
    async with SimServer([meter]) as server:
        url = urlsplit(server.url_for(meter))
        host, port = url.hostname, url.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /api/auth/unauthorized HTTP/1.1\r\nHost: m\r\n\r\n" * 2)
        await writer.drain()
        for _ in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 401 ")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            assert b'"Authentication required."' in await reader.readexactly(length)
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()
        reply = await reader.read()  # answered, then closed
        assert reply.startswith(b"HTTP/1.1 400 ")
        writer.close()
        await writer.wait_closed()
    assert [c.status for c in meter.calls] == [401, 401]
