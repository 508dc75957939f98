"""``meters[].invert``: the named registers read with the opposite sign -- live and from the
meter's database alike -- the others as the meter reports them. The client against the
simulator over real HTTP."""

from __future__ import annotations

import math

import pytest

from gateway.meter import WebApiClient, inverted
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME

pytestmark = pytest.mark.integration


async def test_named_registers_read_negated_everywhere(
        sim_meter: SimMeter, sim_server: SimServer) -> None:
    plain = WebApiClient("sim", sim_server.url_for(sim_meter), SIM_USERNAME,
                         Secret(SIM_PASSWORD))
    client = inverted(plain, ["Panel A/B"])
    async with plain:
        reading = await client.read()
        values = reading.by_name()
        second = math.floor(reading.ts)
        panel, grid = values["Panel A/B"], values["Grid"]
        # the sub-panel's CT is reversed on the simulated site: it reads negative
        assert sim_meter.rate("Panel A/B", second) < 0
        assert panel.rate == -sim_meter.rate("Panel A/B", second) > 0
        raw = sim_meter.raw("Panel A/B", second) - sim_meter.raw("Panel A/B", sim_meter.epoch)
        assert panel.raw == -raw
        assert panel.cumulative == pytest.approx(-raw / 3.6e6)
        assert grid.rate == sim_meter.rate("Grid", second)  # not named: as it is
        rows = await client.history(second - 3, 1, second)
        assert [ts for ts, _ in rows] == [second - 3, second - 2, second - 1, second]
        base = sim_meter.raw("Panel A/B", sim_meter.epoch)
        for ts, raws in rows:
            assert raws["Panel A/B"] == -(sim_meter.raw("Panel A/B", ts) - base)
            assert raws["Grid"] == sim_meter.raw("Grid", ts) - sim_meter.raw("Grid",
                                                                               sim_meter.epoch)
    assert inverted(plain, []) is plain  # nothing named: the client itself
