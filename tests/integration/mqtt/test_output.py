"""The gateway in this process, two simulated meters over real HTTP, a real broker and a
paho subscriber: what lands on MQTT, and that it matches the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from gateway.model import Reading, RegisterInfo, RegisterValue
from gateway.mqtt import MqttConnection, MqttOutput, unique_slugs
from gateway.mqtt.ledger import FILE_NAME, RetainedLedger
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker, require_binary
from tests.support.mqtt import (
    Received,
    expected_cumulative,
    gateway_config,
    running,
    running_app,
    subscriber,
)
from tests.support.waiting import async_wait_until


def online(m: Received) -> bool:
    return m.payload == b"online"


async def test_bridge_meters_devices_and_values_match_the_simulator(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    meters = {"main": SimMeter("SIM0001"), "garage": SimMeter("SIM0002", hostname="garage")}
    p = topic_prefix
    async with SimServer(list(meters.values())) as server:
        urls = [(mid, server.url_for(m)) for mid, m in meters.items()]
        config = gateway_config(broker, p, tmp_path / "state", urls)
        with subscriber(broker, f"{p}/#") as sub:
            async with running_app(config):
                await sub.await_for(f"{p}/bridge/state", online)
                info = (await sub.await_for(f"{p}/bridge/info")).json()
                assert info["meters"] == ["main", "garage"]
                assert "mqtt" in info["outputs"]
                for mid, meter in meters.items():
                    await sub.await_for(f"{p}/{mid}/availability", online)
                    device = (await sub.await_for(f"{p}/{mid}/device")).json()
                    assert device["serial"] == meter.serial
                    assert device["model"] == meter.model
                    assert device["hostname"] == meter.hostname
                    # two polls, so the per-register topics have something to compare with
                    await async_wait_until(lambda mid=mid: len(sub.on(f"{p}/{mid}/state")) >= 2,
                                           what=f"two states of {mid}")
    for mid, meter in meters.items():
        states = sub.on(f"{p}/{mid}/state")
        slugs = unique_slugs(r.name for r in meter.registers)
        for message in states:
            state = message.json()
            ts = state["ts"]
            assert state["meter"] == mid
            assert 0 <= state["age"] < 5
            assert set(state["registers"]) == set(slugs.values())
            for name, slug in slugs.items():
                entry = state["registers"][slug]
                assert entry["name"] == name
                assert entry["rate"] == pytest.approx(meter.rate(name, ts), rel=1e-4, abs=0.01)
                assert entry["cumulative"] == pytest.approx(
                    expected_cumulative(meter, name, ts), rel=1e-6, abs=1e-4)
        # every per-register value is the rate of one of the published states
        rates_seen = {slug: {s.json()["registers"][slug]["rate"] for s in states}
                      for slug in slugs.values()}
        for slug in slugs.values():
            values = sub.on(f"{p}/{mid}/register/{slug}")
            assert values, slug
            for v in values:
                assert float(v.payload) in rates_seen[slug]
    # the clean stop: meters and bridge offline
    assert sub.last(f"{p}/bridge/state").payload == b"offline"  # type: ignore[union-attr]
    for mid in meters:
        assert sub.last(f"{p}/{mid}/availability").payload == b"offline"  # type: ignore[union-attr]


async def test_discovery_resent_when_home_assistant_comes_online(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    meter = SimMeter("SIM0003")
    p, ha = topic_prefix, f"{topic_prefix}-ha"
    grid = f"{ha}/sensor/egauge_SIM0003/grid/config"
    async with SimServer([meter]) as server:
        config = gateway_config(broker, p, tmp_path / "state", [("main", server.url_for(meter))])
        with subscriber(broker, f"{ha}/#") as sub:
            async with running_app(config):
                first = await sub.await_for(grid)
                cfg = first.json()
                assert cfg["device"]["identifiers"] == ["egauge_SIM0003"]
                assert cfg["device"]["configuration_url"] == server.url_for(meter)
                assert cfg["availability"][1]["topic"] == f"{p}/main/availability"
                await sub.await_for(f"{ha}/sensor/egauge_SIM0003/solar_plus-energy/config")
                sub.clear()
                sub.client.publish(f"{ha}/status", b"online", qos=1)
                again = await sub.await_for(grid)
                assert again.json() == cfg
                await sub.await_for(f"{ha}/binary_sensor/egauge_gateway_{config.gateway.id}"
                                    "/bridge/config")


async def test_a_removed_meters_retained_topics_are_cleared_on_the_next_start(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    main, garage = SimMeter("SIM0004"), SimMeter("SIM0005")
    p, ha = topic_prefix, f"{topic_prefix}-ha"
    state_dir = tmp_path / "state"
    async with SimServer([main, garage]) as server:
        both = [("main", server.url_for(main)), ("garage", server.url_for(garage))]
        with subscriber(broker, f"{p}/garage/#") as sub:
            async with running_app(gateway_config(broker, p, state_dir, both)):
                await sub.await_for(f"{p}/garage/state")
                await sub.await_for(f"{p}/garage/register/grid")
        ledger = json.loads((state_dir / FILE_NAME).read_text())
        recorded = set(ledger["meters"]["garage"]["topics"])
        assert {f"{p}/garage/availability", f"{p}/garage/state", f"{p}/garage/device",
                f"{p}/garage/register/grid", f"{ha}/sensor/egauge_SIM0005/grid/config"
                } <= recorded
        with subscriber(broker, f"{p}/garage/#") as sub, \
                subscriber(broker, f"{ha}/sensor/egauge_SIM0005/#") as ha_sub:
            await sub.await_for(f"{p}/garage/state")  # retained from the first run
            async with running_app(gateway_config(broker, p, state_dir, both[:1])):
                for topic in (f"{p}/garage/state", f"{p}/garage/availability"):
                    await sub.await_for(topic, lambda m: m.payload == b"")
                await ha_sub.await_for(f"{ha}/sensor/egauge_SIM0005/grid/config",
                                       lambda m: m.payload == b"")
        assert "garage" not in json.loads((state_dir / FILE_NAME).read_text())["meters"]
    # a new subscriber finds nothing retained for the removed meter
    with subscriber(broker, f"{p}/garage/#") as late:
        # retained messages come right after the subscription, so before this marker
        late.client.publish(f"{p}/garage/marker", b"marker", qos=1)
        await late.await_for(f"{p}/garage/marker")
        assert [m.topic for m in late.messages if m.payload != b"marker"] == []


async def test_mosquitto_sub_reads_the_retained_state(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    tool = require_binary("mosquitto_sub")
    meter = SimMeter("SIM0006")
    p = topic_prefix
    async with SimServer([meter]) as server:
        config = gateway_config(broker, p, tmp_path / "state", [("main", server.url_for(meter))])
        async with running_app(config):
            proc = await asyncio.create_subprocess_exec(
                tool, "-h", broker.host, "-p", str(broker.port), "-t", f"{p}/main/state",
                "-C", "1", "-W", "15", stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
    assert proc.returncode == 0
    state = json.loads(out)
    assert state["meter"] == "main"
    grid = state["registers"]["grid"]
    assert grid["name"] == "Grid"
    assert grid["unit"] == "W"
    assert grid["cumulative_unit"] == "kWh"
    assert grid["rate"] == pytest.approx(meter.rate("Grid", state["ts"]), rel=1e-4, abs=0.01)


async def test_register_values_only_when_changed_or_when_the_heartbeat_is_due(
    broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    p = topic_prefix
    now = [100.0]
    config = gateway_config(broker, p, tmp_path / "state", [("main", "http://127.0.0.1:9")],
                            max_silence_s=30.0, min_interval_s=0.0)
    conn = MqttConnection(config.mqtt, client_id=f"{p}-gw")
    output = MqttOutput(config, conn, RetainedLedger(tmp_path / "ledger.json"),
                        clock=lambda: now[0])
    await output.start()

    def reading(rate: float) -> Reading:
        return Reading("main", 1.7e9, (RegisterValue("Grid", "P", "W", rate, 1.0, "kWh"),))

    with subscriber(broker, f"{p}/main/#") as sub:
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="connected")
            output.on_registers("main", (RegisterInfo("Grid", "P", 3, 0),))
            output.on_reading(reading(5.0))  # first value: sent
            output.on_reading(reading(5.0))  # unchanged: not sent
            now[0] += 29.9
            output.on_reading(reading(5.0))  # unchanged, 29.9 s of silence: not sent
            now[0] += 0.1
            output.on_reading(reading(5.0))  # 30 s of silence: the heartbeat sends it
            output.on_reading(reading(-6.4))  # changed: sent
            conn.publish(f"{p}/main/marker", b"end", 1)  # same connection: arrives last
            await sub.await_for(f"{p}/main/marker")
    # watts have no decimals: the quantum is 1 W
    assert [m.payload for m in sub.on(f"{p}/main/register/grid")] == [b"5", b"5", b"-6"]
    assert len(sub.on(f"{p}/main/state")) == 5  # the state goes out on every poll


async def test_register_topics_keep_a_minimum_interval_and_a_deadband(
        broker: Broker, topic_prefix: str, tmp_path: Path) -> None:
    """A rate goes out again only after ``min_interval_s`` and when it moved by at least the
    type's deadband (the heartbeat still sends it after ``max_silence_s``); the energy and
    counters below it keep the interval; the state JSON carries every poll."""
    p = topic_prefix
    now = [100.0]
    config = gateway_config(broker, p, tmp_path / "state", [("main", "http://127.0.0.1:9")],
                            max_silence_s=60.0, min_interval_s=10.0, deadband=(("P", 50.0),))
    conn = MqttConnection(config.mqtt, client_id=f"{p}-gw")
    output = MqttOutput(config, conn, RetainedLedger(tmp_path / "ledger.json"),
                        clock=lambda: now[0])
    await output.start()

    def reading(rate: float, kwh: float) -> Reading:
        return Reading("main", 1.7e9, (RegisterValue("Grid", "P", "W", rate, kwh, "kWh"),))

    polls = [(0.0, 1000.0, 1.0),  # the first values: sent
             (5.0, 1400.0, 1.0001),  # within the interval: nothing
             (10.0, 1040.0, 1.0002),  # the rate within the deadband of 1000; the energy sent
             (12.0, 1060.0, 1.0003),  # the rate 60 W from what was sent: sent
             (13.0, 2000.0, 1.0004),  # only 1 s (3 s) later: nothing
             (23.0, 2000.0, 1.0004),  # both moved since they were sent: sent
             (83.0, 2000.0, 1.0004)]  # 60 s of silence: the heartbeat sends both
    with subscriber(broker, f"{p}/main/#") as sub:
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="connected")
            output.on_registers("main", (RegisterInfo("Grid", "P", 3, 0),))
            for at, rate, kwh in polls:
                now[0] = 100.0 + at
                output.on_reading(reading(rate, kwh))
            conn.publish(f"{p}/main/marker", b"end", 1)
            await sub.await_for(f"{p}/main/marker")
    assert [m.payload for m in sub.on(f"{p}/main/register/grid")] == [
        b"1000", b"1060", b"2000", b"2000"]
    assert [m.payload for m in sub.on(f"{p}/main/register/grid/energy")] == [
        b"1.0", b"1.0002", b"1.0004", b"1.0004"]
    assert len(sub.on(f"{p}/main/state")) == len(polls)


async def test_diagnostics_leave_with_a_reading_once_their_interval_passed(
        broker: Broker, topic_prefix: str, tmp_path: Path) -> None:
    """A polled meter's diagnostics go out with one of its readings once
    ``max(1 s, min_interval_s)`` passed since the last (each meter at its own moment: never
    the whole fleet in one turn of the loop); a meter nobody polls gets them from the check
    every second."""
    p = topic_prefix
    now = [100.0]
    meters = [("main", "http://127.0.0.1:9"), ("quiet", "http://127.0.0.1:9")]
    config = gateway_config(broker, p, tmp_path / "state", meters, min_interval_s=10.0)
    conn = MqttConnection(config.mqtt, client_id=f"{p}-gw")
    output = MqttOutput(config, conn, RetainedLedger(tmp_path / "ledger.json"),
                        clock=lambda: now[0])
    await output.start()
    reading = Reading("main", 1.7e9, (RegisterValue("Grid", "P", "W", 5.0, 1.0, "kWh"),))
    with subscriber(broker, f"{p}/+/diagnostics") as sub:
        task = asyncio.create_task(output.serve(), name="mqtt-output")
        try:
            await async_wait_until(lambda: conn.connected, what="connected")
            output.on_registers("main", (RegisterInfo("Grid", "P", 3, 0),))
            for at in (0.0, 5.0, 10.0, 12.0, 21.0):  # sent at 0, 10 and 21
                now[0] = 100.0 + at
                output.on_reading(reading)
            conn.publish(f"{p}/marker/diagnostics", b"end", 1)  # same connection: last
            await sub.await_for(f"{p}/marker/diagnostics")
            assert len(sub.on(f"{p}/main/diagnostics")) == 3
            quiet = await sub.await_for(f"{p}/quiet/diagnostics", timeout=5)  # never polled
            assert quiet.json()["online"] is False
            now[0] += 11.0  # main: last polled 11 s ago; the check sends them
            await async_wait_until(lambda: len(sub.on(f"{p}/main/diagnostics")) == 4,
                                   timeout=5, what="main's diagnostics from the check")
        finally:
            await conn.close(grace_s=2.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
