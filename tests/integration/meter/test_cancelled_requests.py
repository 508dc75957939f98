"""Requests cancelled at any moment -- by the channel's deadline or by a caller's time limit
(the backfills' slot before the next poll), several at once -- never leave a meter's client
unable to reach a meter that answers: httpcore 1.0's pool can keep the slots of such requests
for good (encode/httpcore#1093), so the channel replaces its pool after a cancelled request."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import pytest

from gateway.errors import MeterError
from gateway.meter import WebApiClient
from gateway.secret import Secret
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME

pytestmark = pytest.mark.integration


async def test_requests_cancelled_under_contention_leave_the_client_working() -> None:
    meter = SimMeter("SIM0001", username=SIM_USERNAME, password=SIM_PASSWORD)
    with ThreadedSimServer([meter]) as sim:
        async with WebApiClient("sim", sim.url_for(meter), SIM_USERNAME, Secret(SIM_PASSWORD),
                                timeout_s=0.9) as client:
            await client.read()
            rng = random.Random(7)

            async def cancelled(i: int) -> None:
                now = time.time()
                with contextlib.suppress(TimeoutError, MeterError):
                    async with asyncio.timeout(rng.uniform(0.0005, 0.02)):
                        if i % 2:
                            await client.history(now - 600, 1, now - 1, 300)
                        else:
                            await client.read()

            for _ in range(30):
                await asyncio.gather(*(cancelled(i) for i in range(8)))
            readings = [await client.read() for _ in range(5)]  # each within its 0.9 s
            assert all(len(r.registers) == len(meter.registers) for r in readings)
            assert client.channel_renewals > 0
