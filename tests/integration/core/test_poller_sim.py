"""Poller against the simulator over real HTTP: a meter that goes away is shown offline after
``offline_after`` failed polls and online on the first good poll, each logged exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from gateway.config import MeterConfig
from gateway.core import Hub, Poller
from gateway.meter import WebApiClient
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import gateway_config, running_app, subscriber
from tests.support.recorder import Recorder
from tests.support.waiting import async_wait_until


def payload_is(value: bytes):  # type: ignore[no-untyped-def]
    return lambda m: m.payload == value


async def test_meter_down_offline_after_n_polls_then_online_once_each(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    meter = SimMeter("SIM0201")
    p = topic_prefix
    async with SimServer([meter]) as server:
        config = gateway_config(broker, p, tmp_path / "state", [("main", server.url_for(meter))],
                                poll_interval_s=0.25, offline_after=3)
        with subscriber(broker, f"{p}/main/availability") as sub, \
                structlog.testing.capture_logs() as logs:
            async with running_app(config) as app:
                await sub.await_for(f"{p}/main/availability", payload_is(b"online"))
                assert len(meter.calls_to("/sys")) == 1
                sub.clear()
                meter.go_down(2.0)
                await sub.await_for(f"{p}/main/availability", payload_is(b"offline"))
                stats = app.pollers["main"].stats
                assert stats.consecutive_failures >= 3

                def back_online() -> bool:
                    flips = [m.payload for m in sub.on(f"{p}/main/availability")]
                    return flips[-1:] == [b"online"] and b"offline" in flips

                await async_wait_until(back_online, timeout=20, what="online again")
                # the identity is read again after the offline period
                assert len(meter.calls_to("/sys")) == 2
    flips = [m.payload for m in sub.on(f"{p}/main/availability")]
    assert flips[:2] == [b"offline", b"online"]
    offline = [e for e in logs if e["event"] == "meter_offline"]
    online = [e for e in logs if e["event"] == "meter_online"]
    assert len(offline) == 1
    assert offline[0]["meter"] == "main"
    assert offline[0]["failed_polls"] == 3
    assert offline[0]["reason"].startswith("MeterUnavailable")
    assert [e["reason"] for e in online] == ["first_poll", "recovered"]
    assert online[1]["failed_polls"] >= 3


async def test_register_set_change_on_the_meter_is_published() -> None:
    meter = SimMeter("SIM0202")
    async with SimServer([meter]) as server:
        cfg = MeterConfig("main", server.url_for(meter), "owner", Secret("default"),
                          poll_interval_s=0.2, timeout_s=0.15)
        client = WebApiClient.from_config(cfg)
        hub = Hub(["main"])
        rec = Recorder()
        hub.add_sink(rec)
        poller = Poller(cfg, client, hub, asyncio.Lock())
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(poller.run(), name="poll:main")
            await async_wait_until(lambda: rec.readings, what="a first reading")
            assert [r.name for r in rec.registers[0]] == [r.name for r in meter.registers]
            meter.remove_registers(["Temp Büro"])
            await async_wait_until(lambda: len(rec.registers) == 2, what="the new register set")
            task.cancel()
        await client.aclose()
    names = [r.name for r in rec.registers[1]]
    assert "Temp Büro" not in names
    assert names == [r.name for r in meter.registers]
    assert all(r.type_code == meter.register(r.name).type_code for r in rec.registers[1])
    assert poller.stats.polls_failed == 0

