"""The simulated meter's login flow over real HTTP (and HTTPS)."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme

from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import (
    SIM_PASSWORD,
    SIM_USERNAME,
    ManualClock,
    digest_login_body,
    sim_login,
)

pytestmark = pytest.mark.integration

PROTECTED = ["/register", "/local", "/sys", "/config/net/hostname", "/ctrl/device",
             "/auth/rights", "/auth/logout"]


def api(server: SimServer, meter: SimMeter) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url_for(meter) + "/api")


def assert_challenge(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 401
    body = reply.json()
    assert body["error"] == "Authentication required."
    assert body["rlm"] == "eGauge Administration"
    assert body["nnc"].count(".") == 2  # a signed, JWT-shaped nonce
    return {"rlm": body["rlm"], "nnc": body["nnc"]}


async def test_login_flow_and_token_use(sim_server: SimServer, sim_meter: SimMeter) -> None:
    async with api(sim_server, sim_meter) as client:
        challenge = assert_challenge(await client.get("/auth/unauthorized"))
        for path in PROTECTED:
            assert_challenge(await client.get(path))
        login = await client.post("/auth/login",
                                  json=digest_login_body(challenge, SIM_USERNAME, SIM_PASSWORD))
        assert login.status_code == 200
        token = login.json()["jwt"]
        client.headers["Authorization"] = f"Bearer {token}"
        assert (await client.get("/auth/unauthorized")).json() == {"status": "You are logged in."}
        assert (await client.get("/auth/rights")).json() == {"usr": "owner",
                                                              "rights": ["save", "ctrl"]}
        assert (await client.get("/sys/sn")).json() == {"result": "SIM0001"}
        assert sim_meter.logins == 1
        assert (await client.get("/auth/logout")).json() == {"status": "OK"}
        assert_challenge(await client.get("/sys/sn"))
    logins = sim_meter.calls_to("/auth/login")
    assert len(logins) == 1
    assert logins[0].body["hash"] == "***"  # the digest is not kept in the record


async def test_wrong_password_and_malformed_login(sim_server: SimServer,
                                                 sim_meter: SimMeter) -> None:
    async with api(sim_server, sim_meter) as client:
        challenge = assert_challenge(await client.get("/auth/unauthorized"))
        wrong = await client.post("/auth/login",
                                  json=digest_login_body(challenge, SIM_USERNAME, "guess"))
        assert (wrong.status_code, wrong.json()) == (200, {"error": "Invalid credentials."})
        bad = await client.post("/auth/login", content=b"{not json",
                                headers={"Content-Type": "application/json"})
        assert (bad.status_code, bad.json()) == (400, {"error": "Bad Request"})
        partial = await client.post("/auth/login", json={"usr": "owner"})
        assert partial.status_code == 400
        plain_pw = await client.post("/auth/login", json={"rlm": challenge["rlm"],
                                                          "usr": SIM_USERNAME,
                                                          "pwd": SIM_PASSWORD})
        assert plain_pw.json() == {"error": "Password login requires HTTPS."}
    assert sim_meter.logins == 0


async def test_nonce_and_token_expiry_with_an_injected_clock() -> None:
    clock = ManualClock()
    meter = SimMeter(password="pw", token_lifetime_s=300, nonce_lifetime_s=30, clock=clock)
    async with SimServer([meter]) as server, api(server, meter) as client:
        stale = assert_challenge(await client.get("/auth/unauthorized"))
        clock.advance(31)
        expired = await client.post("/auth/login",
                                    json=digest_login_body(stale, "owner", "pw"))
        assert (expired.status_code, expired.json()) == (200, {"error": "Nonce expired."})
        await sim_login(client, "owner", "pw")
        assert (await client.get("/sys/sn")).status_code == 200
        clock.advance(299)
        assert (await client.get("/sys/sn")).status_code == 200
        clock.advance(1)
        assert_challenge(await client.get("/sys/sn"))
        await sim_login(client, "owner", "pw")
        assert (await client.get("/sys/sn")).status_code == 200
        meter.revoke_tokens()
        assert_challenge(await client.get("/sys/sn"))
        await sim_login(client, "owner", "pw")
        held = assert_challenge(await client.get("/auth/unauthorized",
                                                 headers={"Authorization": ""}))
        meter.expire_nonces()
        late = await client.post("/auth/login", json=digest_login_body(held, "owner", "pw"))
        assert late.json() == {"error": "Nonce expired."}
    assert meter.logins == 3


async def test_missing_right_is_401() -> None:
    meter = SimMeter(password="pw", rights=["save"])
    async with SimServer([meter]) as server, api(server, meter) as client:
        await sim_login(client, "owner", "pw")
        assert (await client.get("/auth/rights")).json()["rights"] == ["save"]
        assert_challenge(await client.get("/ctrl/device"))
        assert (await client.get("/config/net/hostname")).status_code == 200
    reader = SimMeter(password="pw", rights=[])
    async with SimServer([reader]) as server, api(server, reader) as client:
        await sim_login(client, "owner", "pw")
        assert_challenge(await client.post("/cmd/clear", json="excess"))
        assert_challenge(await client.put("/config/net/hostname", json="x"))


async def test_password_login_over_tls() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    meter = SimMeter(password="pw")
    async with SimServer([meter], ssl=server_ctx) as server:
        url = server.url_for(meter)
        assert url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url + "/api", verify=client_ctx) as client:
            login = await client.post("/auth/login", json={"rlm": "eGauge Administration",
                                                           "usr": "owner", "pwd": "pw"})
            client.headers["Authorization"] = f"Bearer {login.json()['jwt']}"
            assert (await client.get("/sys/sn")).json() == {"result": "SIM0001"}
            await sim_login(client, "owner", "pw")  # digest works over TLS too
    assert meter.logins == 2
    assert meter.calls_to("/auth/login")[0].body["pwd"] == "***"
