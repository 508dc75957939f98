"""Fidelity of the simulator as seen by the community client egauge-async 0.4.

Which reactive-power code which client needs: egauge-async parses every register's type
with its own enum, which knows reactive power only as the spec's ``var``; a register typed
``PQ`` (egauge-python's code, the simulator's default) makes ``get_register_info()``,
``get_current_counters()`` and ``get_historical_counters()`` raise ``ValueError``, while
``get_current_measurements()`` (names and rates only) works. So egauge-async needs
``SimMeter(reactive_code="var")`` / ``egauge-gateway simulate --reactive-code var``.

egauge-async only builds ``http://<host>/api`` URLs (port 80); the tests give it an httpx
client whose transport sends each request to the simulator's port instead, as the fleet
benchmark does. Its token handling checks ``beg + ltm`` against the real clock, so the
meter's (stopped) clock stands at the current second.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from egauge_async.json.client import EgaugeJsonClient
from egauge_async.json.models import RegisterType

from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME, ManualClock

pytestmark = pytest.mark.integration


class PortTransport(httpx.AsyncHTTPTransport):
    """A real HTTP transport that sends every request to ``port`` (the URL says 80)."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(port=self.port)
        return await super().handle_async_request(request)


@pytest.fixture
def now() -> int:
    return math.floor(time.time())


def meter_for(code: str, now: int) -> SimMeter:
    return SimMeter("SIM0044", SIM_USERNAME, SIM_PASSWORD, clock=ManualClock(now + 0.5),
                    reactive_code=code)


async def client_of(meter: SimMeter) -> AsyncIterator[EgaugeJsonClient]:
    async with SimServer([meter]) as server, httpx.AsyncClient(
            transport=PortTransport(server.endpoint(meter).port), timeout=5) as http:
        client = EgaugeJsonClient("127.0.0.1", SIM_USERNAME, SIM_PASSWORD, http, use_ssl=False)
        yield client
        await client.close()


@pytest.fixture
async def spec_coded(now: int) -> AsyncIterator[tuple[EgaugeJsonClient, SimMeter]]:
    meter = meter_for("var", now)
    async for client in client_of(meter):
        yield client, meter


@pytest.fixture
async def pq_coded(now: int) -> AsyncIterator[tuple[EgaugeJsonClient, SimMeter]]:
    meter = meter_for("PQ", now)
    async for client in client_of(meter):
        yield client, meter


async def test_var_mode_reads_everything(spec_coded: tuple[EgaugeJsonClient, SimMeter],
                                         now: int) -> None:
    client, meter = spec_coded
    physical = [r for r in meter.registers if not r.virtual]
    info = await client.get_register_info()
    assert list(info) == [r.name for r in physical]
    assert info["Reactive"].type == RegisterType.REACTIVE_POWER
    assert {n: (i.idx, i.did) for n, i in info.items()} == {
        r.name: (r.idx, r.did) for r in physical}
    rates = await client.get_current_measurements()
    assert rates == {r.name: meter.rate(r.name, now) for r in physical}
    counters = await client.get_current_counters()
    for reg in physical:
        expected = (meter.raw(reg.name, now) - meter.raw(reg.name, meter.epoch)) * reg.quantum
        assert counters[reg.name] == pytest.approx(expected, rel=1e-12), reg.name
    subset = await client.get_current_measurements(["Grid", "Reactive"])
    assert subset == {"Grid": meter.rate("Grid", now), "Reactive": meter.rate("Reactive", now)}
    end = dt.datetime.fromtimestamp(now, dt.UTC)
    rows = await client.get_historical_counters(end - dt.timedelta(minutes=10), end,
                                                dt.timedelta(minutes=1), ["Grid"])
    assert rows
    for row in rows:
        t = row["ts"]
        assert isinstance(t, dt.datetime)
        second = int(t.timestamp())
        assert row["Grid"] == meter.raw("Grid", second) - meter.raw("Grid", meter.epoch)
    assert await client.get_device_serial_number() == "SIM0044"
    assert await client.get_model() == meter.model
    assert await client.get_hostname() == meter.hostname
    assert (await client.get_user_rights()).rights == ["save", "ctrl"]


async def test_pq_mode_breaks_egauge_asyncs_type_parsing(
        pq_coded: tuple[EgaugeJsonClient, SimMeter], now: int) -> None:
    client, meter = pq_coded
    rates = await client.get_current_measurements()  # no type codes involved
    assert rates["Reactive"] == meter.rate("Reactive", now)
    for read in (client.get_register_info, client.get_current_counters):
        with pytest.raises(ValueError, match="'PQ' is not a valid RegisterType"):
            await read()
