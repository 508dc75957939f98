"""/api/lua and /api/providers of the simulated meter over real HTTP, and the masking of
secret-shaped values in the simulator's call record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.simulator import SimMeter
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME, ManualClock, served_client

pytestmark = pytest.mark.integration

T = 1_700_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T + 0.25)


@pytest.fixture
def meter(clock: ManualClock) -> SimMeter:
    return SimMeter(password=SIM_PASSWORD, clock=clock)


@pytest.fixture
async def client(meter: SimMeter) -> AsyncIterator[httpx.AsyncClient]:
    async with served_client(meter) as c:
        yield c


async def test_lua_vars_shape(client: httpx.AsyncClient) -> None:
    body = (await client.get("/lua/var")).json()
    variables = body["result"]
    assert set(variables) >= {"tariff_rate", "mode", "uptime_min"}
    for entry in variables.values():
        assert set(entry) == {"value", "desc"}
        assert isinstance(entry["value"], str)
        json.loads(entry["value"])  # the value is JSON text
    assert json.loads(variables["mode"]["value"]) == "auto"
    assert (await client.get("/lua/var/mode/value")).json() == {"result": '"auto"'}
    assert (await client.get("/lua/var", params={"filter": "{mode}"})).json() == {
        "result": {"mode": variables["mode"]}}
    assert (await client.get("/lua/var/nope")).json() == {"error": "Unknown path: /var/nope."}


async def test_lua_var_write_and_read_back(client: httpx.AsyncClient, clock: ManualClock
                                           ) -> None:
    assert (await client.put("/lua/var/mode/value", json='"eco"')).json() == {"status": "OK"}
    assert (await client.get("/lua/var/mode/value")).json() == {"result": '"eco"'}
    assert (await client.post("/lua/var/tariff_rate/value", json="0.35")).json() == {
        "status": "OK"}
    assert json.loads((await client.get("/lua/var/tariff_rate")).json()["result"]["value"]
                      ) == 0.35
    clock.advance(300)
    # the script owns uptime_min: a write is accepted, but the script sets it again
    assert (await client.put("/lua/var/uptime_min/value", json="9999")).json() == {
        "status": "OK"}
    assert (await client.get("/lua/var/uptime_min/value")).json()["result"] != "9999"
    for body, error in (("eco", "Invalid value for /var/mode/value: not JSON: 'eco'."),
                        (5, "Invalid value for /var/mode/value: expected a JSON-encoded "
                            "string.")):
        reply = await client.put("/lua/var/mode/value", json=body)
        assert reply.json() == {"error": error}
    assert (await client.put("/lua/var/mode/desc", json="x")).json() == {
        "error": "Read-only: /var/mode/desc."}
    assert (await client.put("/lua/var/ghost/value", json="1")).json() == {
        "error": "Unknown path: /var/ghost."}
    assert (await client.get("/lua/var/mode/value")).json() == {"result": '"eco"'}


async def test_lua_writes_need_the_save_right() -> None:
    meter = SimMeter(password=SIM_PASSWORD, rights=())
    async with served_client(meter, SIM_USERNAME, SIM_PASSWORD) as client:
        assert (await client.get("/lua/var")).status_code == 200
        reply = await client.put("/lua/var/mode/value", json='"off"')
        assert reply.status_code == 401
        assert reply.json()["error"] == "Authentication required."
    assert meter.lua.values["mode"] == '"auto"'


async def test_providers(client: httpx.AsyncClient, meter: SimMeter) -> None:
    for kind in ("alert", "push", "tariff"):
        body = (await client.get(f"/providers/{kind}")).json()
        listed = body["reply"]["providers"]
        assert listed
        assert all(isinstance(p["name"], str) and isinstance(p["control"], str)
                   for p in listed)
    tariffs = (await client.get("/providers/tariff")).json()["reply"]["providers"]
    assert (await client.get("/providers/tariff/1")).json() == {"reply": tariffs[1]}
    assert (await client.get("/providers/tariff/9")).json() == {
        "error": "Unknown tariff provider: '9'."}
    assert (await client.get("/providers/other")).json() == {
        "error": "Unknown path: /providers/other."}
    meter.internet_access = False
    assert (await client.get("/providers/push")).json() == {"error": "No Internet access."}
    assert (await client.post("/providers/push", json={})).status_code == 405


async def test_the_call_record_masks_secret_shaped_values(client: httpx.AsyncClient,
                                                          meter: SimMeter) -> None:
    jwt = "eyJ0eXAiOiJKV1QifQ.eyJ1c3IiOiJvd25lciJ9.c2lnbmF0dXJl"
    await client.put("/config/push", json={"password": "hunter2", "user": "me"})
    await client.put("/config/user/owner/hash", json="0123456789abcdef0123456789abcdef")
    await client.post("/cmd/test-email", json={"address": "a@b.example", "mailpass": "pw1",
                                                "note": jwt})
    await client.post("/cmd/homeplug", json={"action": "setpwd", "password": "pw2",
                                             "targets": ["00:11/ABC"]})
    recorded = {c.path: c.body for c in meter.calls if c.method != "GET"}
    assert recorded["/api/config/push"] == {"password": "***", "user": "me"}
    assert recorded["/api/config/user/owner/hash"] == "***"
    assert recorded["/api/cmd/test-email"] == {"address": "a@b.example", "mailpass": "***",
                                               "note": "***"}
    assert recorded["/api/cmd/homeplug"]["password"] == "***"
    assert recorded["/api/cmd/homeplug"]["targets"] == ["00:11/ABC"]
    login = meter.calls_to("/auth/login")[0].body
    assert isinstance(login, dict)
    assert login["hash"] == "***"
    assert login["usr"] == SIM_USERNAME
    shown = json.dumps([c.body for c in meter.calls])
    for secret in ("hunter2", "pw1", "pw2", "0123456789abcdef0123456789abcdef", jwt):
        assert secret not in shown
