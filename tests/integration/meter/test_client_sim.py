"""WebApiClient against the project's simulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from gateway.errors import (
    AuthError,
    MeterError,
    MeterProtocolError,
    MeterReportedError,
    MeterTimeout,
    MeterUnavailable,
)
from gateway.meter import WebApiClient
from gateway.model import Reading
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer, Wave
from tests.support.broker import free_port
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME, ManualClock

pytestmark = pytest.mark.integration

ENERGY_CODES = ("P", "S", "var", "PQ")  # reported in kWh, kVAh, kvarh
JOULES_PER_KWH = 3_600_000


def client_for(server: SimServer, meter: SimMeter, password: str = SIM_PASSWORD,
               **kw: Any) -> WebApiClient:
    return WebApiClient("sim", server.url_for(meter), SIM_USERNAME, Secret(password), **kw)


class HookTransport(httpx.AsyncHTTPTransport):
    """A real HTTP transport that records Authorization headers and runs a hook per reply."""

    def __init__(self, hook: Callable[[httpx.Request, httpx.Response], None] | None = None):
        super().__init__()
        self.hook = hook
        self.bearers: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization")
        if auth:
            self.bearers.add(auth.split(" ", 1)[1])
        response = await super().handle_async_request(request)
        if self.hook is not None:
            self.hook(request, response)
        return response


def logins_posted(meter: SimMeter) -> int:
    return len(meter.calls_to("/auth/login", "POST"))


def rejected(meter: SimMeter) -> int:
    """Requests to protected endpoints that the meter answered with 401."""
    return sum(1 for c in meter.calls if c.status == 401 and not c.path.startswith("/api/auth/"))


def assert_matches_simulator(meter: SimMeter, reading: Reading) -> None:
    """Every value equals the simulator's own prediction at the reply's timestamp."""
    t = math.floor(reading.ts)  # the newest row; rates are those of that second
    assert [v.name for v in reading.registers] == [r.name for r in meter.registers]
    for value in reading.registers:
        raw = meter.raw(value.name, t) - meter.raw(value.name, meter.epoch)
        assert value.raw == raw, value.name
        assert value.rate == pytest.approx(meter.rate(value.name, t), rel=1e-9), value.name
        physical = meter.cumulative(value.name, t) - meter.cumulative(value.name, meter.epoch)
        if value.type_code in ENERGY_CODES:
            physical /= JOULES_PER_KWH
        assert value.cumulative == pytest.approx(physical, rel=1e-9, abs=1e-9), value.name


@pytest.fixture
async def client(sim_server: SimServer, sim_meter: SimMeter) -> AsyncIterator[WebApiClient]:
    async with client_for(sim_server, sim_meter) as c:
        yield c


async def test_login_read_and_values_match_the_simulator(
    client: WebApiClient, sim_meter: SimMeter
) -> None:
    reading = await client.read()
    assert_matches_simulator(sim_meter, reading)
    assert sim_meter.logins == 1
    assert client.logins == 1
    names = ["Temp Büro", "Panel A/B", "Amps #1"]
    subset = await client.read(names)
    assert {v.name for v in subset.registers} == set(names)
    t = math.floor(subset.ts)
    for v in subset.registers:
        assert v.raw == sim_meter.raw(v.name, t) - sim_meter.raw(v.name, sim_meter.epoch)
    assert sim_meter.logins == 1


@pytest.mark.parametrize("code", ["PQ", "var"])
async def test_both_reactive_codes_and_an_unknown_code_are_read(code: str) -> None:
    """The gateway's own client reads the Reactive register whichever code the meter uses
    (egauge-python's ``PQ`` or the spec's ``var``) and passes an unknown code through as a
    plain number (quantum 1, no unit)."""
    meter = SimMeter(password=SIM_PASSWORD, reactive_code=code,
                     clock=ManualClock(1_700_000_000.5))
    meter.add_register("Mystery", "Zq", Wave(5.0, 2.0, 120.0))
    async with SimServer([meter]) as server, client_for(server, meter) as client:
        reading = await client.read()
    assert_matches_simulator(meter, reading)
    values = reading.by_name()
    reactive = values["Reactive"]
    assert (reactive.type_code, reactive.unit, reactive.cumulative_unit) == (code, "var",
                                                                            "kvarh")
    mystery = values["Mystery"]
    assert (mystery.type_code, mystery.unit, mystery.cumulative_unit) == ("Zq", "", "")
    assert mystery.cumulative == mystery.raw


async def test_identity_local_and_history(client: WebApiClient, sim_meter: SimMeter) -> None:
    ident = await client.identity()
    assert ident.serial == sim_meter.serial
    assert ident.model == sim_meter.model
    assert ident.hostname == sim_meter.hostname
    local = {v.name: v for v in await client.local()}
    assert {"L1", "S1", "Tpcb"} <= set(local)
    reading = await client.read()
    end = math.floor(reading.ts)
    rows = await client.history(end - 10, 1, end)
    assert [ts for ts, _ in rows] == [float(t) for t in range(end - 10, end + 1)]
    for ts, raws in rows:
        assert raws["Grid"] == sim_meter.raw("Grid", ts) - sim_meter.raw("Grid", sim_meter.epoch)


async def test_token_is_renewed_before_it_expires() -> None:
    clock = ManualClock()
    meter = SimMeter(password=SIM_PASSWORD, clock=clock, token_lifetime_s=600)
    async with SimServer([meter]) as server, client_for(server, meter, clock=clock) as c:
        await c.read()
        clock.advance(600 - 60 - 1)
        await c.read()
        assert meter.logins == 1
        clock.advance(2)  # inside the renewal margin; the old token is still valid
        with capture_logs() as logs:
            await c.read()
        assert meter.logins == 2
        assert rejected(meter) == 0
        assert any(e["event"] == "meter_token_renewed" for e in logs)


async def test_expired_nonce_is_replaced_by_a_fresh_one(sim_meter: SimMeter) -> None:
    armed = {"on": True}

    def expire_after_first_challenge(request: httpx.Request, response: httpx.Response) -> None:
        if armed["on"] and request.url.path == "/api/auth/unauthorized":
            armed["on"] = False
            sim_meter.expire_nonces()  # the nonce just served is now stale

    transport = HookTransport(expire_after_first_challenge)
    async with SimServer([sim_meter]) as server:
        with capture_logs() as logs:
            async with client_for(server, sim_meter, transport=transport) as c:
                assert_matches_simulator(sim_meter, await c.read())
    assert logins_posted(sim_meter) == 2
    assert sim_meter.logins == 1
    assert any(e["event"] == "meter_nonce_expired" for e in logs)


async def test_revoked_token_causes_one_relogin_and_the_request_succeeds(
    client: WebApiClient, sim_meter: SimMeter
) -> None:
    await client.read()
    challenges = len(sim_meter.calls_to("/auth/unauthorized"))
    sim_meter.revoke_tokens()
    assert_matches_simulator(sim_meter, await client.read())
    assert sim_meter.logins == 2
    assert rejected(sim_meter) == 1
    assert len(sim_meter.calls_to("/auth/unauthorized")) == challenges  # the 401's nonce


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_twenty_concurrent_requests_after_expiry_cause_one_login(how: str) -> None:
    clock = ManualClock()
    meter = SimMeter(password=SIM_PASSWORD, clock=clock, token_lifetime_s=600)
    async with SimServer([meter]) as server, client_for(server, meter, clock=clock) as c:
        await c.read()
        if how == "expired":
            clock.advance(700)
        else:
            meter.revoke_tokens()
        readings = await asyncio.gather(*(c.read() for _ in range(20)))
        assert len(readings) == 20
        assert meter.logins == 2
        assert c.logins == 2


async def test_bad_password_is_an_auth_error_without_a_login_storm(
    sim_server: SimServer, sim_meter: SimMeter
) -> None:
    clock = ManualClock()  # the backoff never runs out during this test
    async with client_for(sim_server, sim_meter, password="wrong", clock=clock) as c:
        with pytest.raises(AuthError, match="login refused: Invalid credentials"):
            await c.read()
        for _ in range(10):
            with pytest.raises(AuthError):
                await c.read()
        results = await asyncio.gather(*(c.read() for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, AuthError) for r in results)
    assert logins_posted(sim_meter) == 1
    assert sim_meter.logins == 0


async def test_broken_json_and_http_500_are_protocol_errors(
    client: WebApiClient, sim_meter: SimMeter
) -> None:
    await client.read()
    sim_meter.faults.broken_json = 1
    with pytest.raises(MeterProtocolError, match="not valid JSON") as info:
        await client.read()
    assert info.value.field == "body"
    sim_meter.faults.http_500 = 1
    with pytest.raises(MeterReportedError, match="HTTP 500"):
        await client.read()
    assert_matches_simulator(sim_meter, await client.read())


async def test_slow_meter_is_a_timeout_and_recovers(sim_server: SimServer,
                                                    sim_meter: SimMeter) -> None:
    async with client_for(sim_server, sim_meter, timeout_s=0.3) as c:
        await c.read()
        sim_meter.faults.latency_s = 1.0
        with pytest.raises(MeterTimeout, match=r"no answer within 0\.3 s"):
            await c.read()
        sim_meter.faults.latency_s = 0.0
        sim_meter.faults.hang = 1
        with pytest.raises(MeterTimeout):
            await c.read()
        assert_matches_simulator(sim_meter, await c.read())


async def test_refused_connection_is_unavailable(sim_server: SimServer,
                                                 sim_meter: SimMeter) -> None:
    async with WebApiClient("gone", f"http://127.0.0.1:{free_port()}", SIM_USERNAME,
                           Secret(SIM_PASSWORD)) as c:
        with pytest.raises(MeterUnavailable, match="meter gone: connection refused"):
            await c.read()
    async with client_for(sim_server, sim_meter) as c:
        await c.read()
        sim_meter.go_down(30)
        with pytest.raises(MeterUnavailable):
            await c.read()


async def test_register_set_change_is_noticed(client: WebApiClient, sim_meter: SimMeter) -> None:
    await client.read()
    assert client.register_set_changed == 0
    sim_meter.reorder_registers(["Voltage L1", "Grid"])
    reading = await client.read()
    assert client.register_set_changed == 1
    assert_matches_simulator(sim_meter, reading)
    infos = await client.register_info()
    assert {i.name: i.idx for i in infos} == {r.name: r.idx for r in sim_meter.registers}
    sim_meter.remove_registers(["Frequency"])
    named = await client.read(["Frequency", "Grid"])
    assert [v.name for v in named.registers] == ["Grid"]
    assert client.register_set_changed == 2


async def test_no_password_or_token_in_logs_errors_or_reprs(sim_meter: SimMeter) -> None:
    transport = HookTransport()
    errors: list[MeterError] = []
    async with SimServer([sim_meter]) as server:
        with capture_logs() as logs:
            async with client_for(server, sim_meter, transport=transport) as c:
                await c.read()
                sim_meter.revoke_tokens()
                await c.read()
                sim_meter.faults.broken_json = 1
                with pytest.raises(MeterError) as broken:
                    await c.read()
                errors.append(broken.value)
                shown = [repr(c), str(c)]
            wrong = WebApiClient("sim", server.url_for(sim_meter), SIM_USERNAME,
                                Secret(SIM_PASSWORD + "-not"), transport=HookTransport())
            async with wrong:
                for _ in range(2):
                    with pytest.raises(AuthError) as refused:
                        await wrong.read()
                    errors.append(refused.value)
    assert len(transport.bearers) == 2
    texts = [repr(e) for e in logs] + shown + [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        for secret in (SIM_PASSWORD, *transport.bearers):
            assert secret not in text
