"""A gateway whose own event loop runs late (the core saturated) against the simulator over
real HTTP: its polls time out, but the meter is not taken offline for it, keeps its session
and its slots, and /metrics shows the late timeouts and the loop's lateness."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from gateway.core.poller import EXCUSED_TIMEOUTS
from gateway.simulator import SimMeter, SimServer
from tests.integration.observe.test_http import full_config, scrape, value
from tests.support.broker import Broker
from tests.support.mqtt import running_app, subscriber
from tests.support.waiting import async_wait_until

BLOCK_S = 0.15  # each time the loop is held (longer than a request's timeout)


@contextlib.asynccontextmanager
async def late_loop() -> AsyncIterator[None]:
    """Hold the event loop for BLOCK_S at a time, with one loop turn between: every request
    the gateway sends meanwhile outlives its timeout with the answer on its way."""

    async def hog() -> None:
        while True:
            time.sleep(BLOCK_S)  # the stimulus: a loop that is not free
            await asyncio.sleep(0)

    task = asyncio.create_task(hog(), name="loop-hog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_timeouts_in_a_late_loop_keep_the_meter_online_and_logged_in(
        sim_server: SimServer, sim_meter: SimMeter, broker: Broker, topic_prefix: str,
        tmp_path: Path) -> None:
    base = full_config(broker, topic_prefix, tmp_path / "state", sim_server.url_for(sim_meter))
    meters = tuple(replace(m, poll_interval_s=0.25, timeout_s=0.1, offline_after=2)
                   for m in base.meters)
    config = replace(base, meters=meters)
    availability = f"{topic_prefix}/main/availability"
    with subscriber(broker, availability) as sub:
        async with running_app(config) as app:
            stats = app.pollers["main"].stats
            await async_wait_until(lambda: stats.polls_ok, what="a first poll")
            logins = sim_meter.logins
            async with late_loop():
                # more timeouts than offline_after, fewer than the excuses
                await async_wait_until(lambda: stats.late_timeouts > 2, timeout=20,
                                       what="polls timing out in the late loop")
            assert stats.late_timeouts < EXCUSED_TIMEOUTS
            assert stats.online is True
            assert stats.consecutive_failures == 0
            polled = stats.polls_ok
            await async_wait_until(lambda: stats.polls_ok > polled, what="polls going on")
            _, samples = await scrape(app)
            assert value(samples, "egauge_meter_poll_late_timeouts_total",
                         meter="main") == stats.late_timeouts
            assert value(samples, "egauge_gateway_loop_late_seconds_total") \
                >= stats.late_timeouts * BLOCK_S / 2
            assert sim_meter.logins == logins  # the session went on: no login again
            flips = [m.payload for m in sub.on(availability)]
    # from the first poll on (before it the gateway says offline), online throughout
    assert flips[flips.index(b"online"):] == [b"online"]
