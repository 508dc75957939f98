"""Drift never passes silently: a register renamed or retyped on the meter (through the
simulator's control endpoint, keeping its idx and did) is logged once as ``register_changed``,
counted in /metrics and shown on the status page -- and not reported again after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import HttpConfig
from gateway.runtime import App
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.mqtt import gateway_config, running_app
from tests.support.simulator import change_registers
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0711")
    with ThreadedSimServer([meter], control=True) as server:
        yield meter, server.url_for(meter)


def changed(logs: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["meter"], e["old_name"], e["new_name"], e["old_type"], e["new_type"])
            for e in logs if e["event"] == "register_changed"]


async def get(app: App, path: str) -> str:
    assert app.http is not None
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{app.http.url}{path}")
    assert reply.status_code == 200
    return reply.text


async def page(app: App) -> str:
    return await get(app, "/")


async def changes_counted(app: App) -> float:
    """``egauge_register_changes_total{meter="main"}`` from /metrics."""
    for family in text_string_to_metric_families(await get(app, "/metrics")):
        for sample in family.samples:
            if sample.name == "egauge_register_changes_total" and sample.labels == {
                    "meter": "main"}:
                return sample.value
    raise AssertionError("egauge_register_changes_total{meter=main} is not in /metrics")


async def test_a_rename_and_a_retype_are_logged_once_counted_and_shown(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    meter, url = sim
    config = replace(gateway_config(broker, topic_prefix, tmp_path / "state", [("main", url)]),
                     http=HttpConfig(host="127.0.0.1", port=0))
    with structlog.testing.capture_logs() as logs:
        async with running_app(config) as app:
            await async_wait_until(lambda: app.hub.meter("main").reading, what="a poll")
            assert await changes_counted(app) == 0
            assert "register changes" not in await page(app)

            await change_registers(url, rename={"Panel A/B": "Panel AB"})

            async def counted(n: int) -> bool:
                return await changes_counted(app) == n

            await async_wait_until(lambda: counted(1), what="the rename counted")
            assert changed(logs) == [("main", "Panel A/B", "Panel AB", "P", "P")]
            shown = await page(app)
            assert "register changes on the meter: 1" in shown
            assert "&#x27;Panel A/B&#x27; renamed to &#x27;Panel AB&#x27;" in shown

            await change_registers(url, retype={"Voltage L1": "I"})
            await async_wait_until(lambda: counted(2), what="the retype counted")
            assert changed(logs)[1:] == [("main", "Voltage L1", "Voltage L1", "V", "I")]
            assert "&#x27;Voltage L1&#x27; retyped V -&gt; I" in await page(app)
            polls = meter.calls_to("/register")
            await async_wait_until(lambda: len(meter.calls_to("/register")) > len(polls) + 3,
                                   what="more polls")
        assert len(changed(logs)) == 2  # once each, however many polls followed

        logs.clear()
        async with running_app(config) as app:  # a restart: the pins know both changes
            await async_wait_until(lambda: app.hub.meter("main").reading, what="a poll")
            assert await changes_counted(app) == 0
    assert changed(logs) == []
