"""Memory stays flat over thousands of polls: the whole gateway in this process (three
simulated meters polled every 10 ms over real HTTP, MQTT to a real broker with history on),
Python allocations traced with tracemalloc and the process RSS read from /proc."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.runtime import App
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import gateway_config, running_app
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

WARM_UP = 1000  # polls before the baseline: connection pools, caches and plans are built
MEASURED = 4000  # polls after it
MAX_PYTHON_GROWTH = 256 * 1024  # bytes: 64 B per poll would already exceed it
MAX_RSS_GROWTH = 16 * 1024 * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def polls(app: App) -> int:
    return sum(p.stats.polls_ok for p in app.pollers.values())


async def settled() -> tuple[int, int]:
    """Traced Python memory and RSS after a full collection."""
    await asyncio.sleep(0)
    gc.collect()
    return tracemalloc.get_traced_memory()[0], rss_bytes()


async def test_memory_is_flat_over_thousands_of_polls(
        broker: Broker, topic_prefix: str, tmp_path: Path) -> None:
    meters = [SimMeter(f"SIM08{i:02d}", max_calls=50) for i in range(3)]
    async with SimServer(meters) as server:
        config = gateway_config(broker, topic_prefix, tmp_path / "state",
                                [(f"m{i}", server.url_for(m)) for i, m in enumerate(meters)],
                                poll_interval_s=0.01)
        config = replace(config, meters=tuple(replace(m, timeout_s=2.0) for m in config.meters))
        assert config.history.enabled
        tracemalloc.start(1)
        try:
            async with running_app(config) as app:
                await async_wait_until(lambda: polls(app) >= WARM_UP, timeout=60,
                                       interval=0.1, what="the warm-up polls")
                python_before, rss_before = await settled()
                target = polls(app) + MEASURED
                await async_wait_until(lambda: polls(app) >= target, timeout=120,
                                       interval=0.1, what=f"{MEASURED} more polls")
                python_after, rss_after = await settled()
                failed = sum(p.stats.polls_failed for p in app.pollers.values())
        finally:
            tracemalloc.stop()
    assert failed == 0
    assert python_after - python_before < MAX_PYTHON_GROWTH, (python_before, python_after)
    assert rss_after - rss_before < MAX_RSS_GROWTH, (rss_before, rss_after)
