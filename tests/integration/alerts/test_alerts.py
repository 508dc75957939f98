"""Meter alerts as MQTT events: new entries of the simulator's alert log appear once each
on ``<base>/<meter>/alert`` (QoS 1, not retained) with a Home Assistant event entity; the
last id is remembered only once the broker acknowledged it, and across a process restart
nothing is repeated or skipped."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts import STATE_FILE, AlertLane, AlertWatch
from gateway.config import AlertsConfig, Config
from gateway.meter import WebApiClient
from gateway.model import Availability
from gateway.mqtt import create_output
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer, ThreadedSimServer
from gateway.simulator.journal import Alert
from tests.support.broker import Broker
from tests.support.lifecycle import PASSWORD, MeterEntry, config_text, gateway_process
from tests.support.mqtt import Received, Subscriber, gateway_config, running_app, subscriber
from tests.support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.integration


def with_alerts(config: Config, interval_s: float = 1.0) -> Config:
    meters = tuple(dataclasses.replace(m, alerts=AlertsConfig(True, interval_s))
                   for m in config.meters)
    return dataclasses.replace(config, meters=meters)


def as_published(meter: str, alert: Alert) -> dict[str, Any]:
    """What the simulator's own entry should look like on the topic."""
    return {"event_type": "alert", "meter": meter, "id": alert.id, "name": alert.name,
            "detail": alert.detail, "prio": alert.prio, "count": alert.count,
            "first": pytest.approx(alert.first, abs=1e-3),
            "last": pytest.approx(alert.last, abs=1e-3), "acked": alert.acked}


def ids_on(sub: Subscriber, topic: str) -> list[int]:
    return [int(m.json()["id"]) for m in sub.on(topic)]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0701", password="default", alert_period_s=0)
    async with SimServer([meter], host="127.0.0.1", port=0) as server:
        yield meter, server.url_for(meter)


async def test_three_alerts_appear_once_each_with_an_event_entity(
        broker: Broker, topic_prefix: str, tmp_path: Path,
        sim: tuple[SimMeter, str]) -> None:
    meter, url = sim
    p = topic_prefix
    topic = f"{p}/main/alert"
    config = with_alerts(gateway_config(broker, p, tmp_path / "state", [("main", url)]))
    before = meter.raise_alert("Door open", "back door", 5)  # already in the log at start
    with subscriber(broker, f"{p}/#") as sub, subscriber(broker, f"{p}-ha/#") as ha:
        async with running_app(config) as app:
            await sub.await_for(topic, lambda m: m.json()["id"] == before.id)
            second = meter.raise_alert("Grid outage", "L1 lost", 7)
            third = meter.raise_alert("Low battery", "sensor 3", 2)
            expected = [as_published("main", a) for a in (before, second, third)]
            await sub.await_for(topic, lambda m: m.json()["id"] == third.id)
            meter.raise_alert("Door open", "back door", 5)  # a repeat: the entry's count grows
            reads = len(meter.calls_to("/log/alert"))
            await async_wait_until(lambda: len(meter.calls_to("/log/alert")) >= reads + 2,
                                   what="two more reads of the alert log")
            assert app.alerts is not None
            assert app.alerts.last_id("main") == third.id
            discovery = f"{p}-ha/event/egauge_SIM0701/alert/config"
            ha.wait_for(discovery)
            with subscriber(broker, discovery) as late:  # kept by the broker for newcomers
                event = late.wait_for(discovery, lambda m: m.retain)
    messages = sub.on(topic)
    assert [m.json() for m in messages] == expected
    assert [m.json()["count"] for m in messages] == [1, 1, 1]
    assert all((m.qos, m.retain) == (1, False) for m in messages)
    config_payload = event.json()
    assert config_payload["state_topic"] == topic
    assert config_payload["event_types"] == ["alert"]
    assert {a["topic"] for a in config_payload["availability"]} == {
        f"{p}/bridge/state", f"{p}/main/availability"}
    saved = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    assert saved["meters"] == {"main": {"last_id": third.id}}


async def test_the_last_id_moves_only_once_the_broker_acknowledged(
        own_broker: Broker, topic_prefix: str, tmp_path: Path,
        sim: tuple[SimMeter, str]) -> None:
    """A frozen broker takes the message but acknowledges nothing: the id is not saved, no
    later round reads or publishes again while it is pending; once the broker wakes up the
    acknowledgement arrives, the id is saved and the message was published exactly once."""
    meter, url = sim
    p = topic_prefix
    state = tmp_path / "state"
    config = with_alerts(gateway_config(own_broker, p, state, [("main", url)]))
    output = create_output(config)
    client = WebApiClient("main", url, "owner", Secret("default"), timeout_s=2.0)
    lane = AlertLane(client, asyncio.Lock())
    watch = AlertWatch(config.meters, output, lambda m: lane, state, ack_timeout_s=0.5)
    assert own_broker.process is not None
    with subscriber(own_broker, f"{p}/main/alert") as sub:
        await output.start()
        serving = asyncio.create_task(output.serve(), name="mqtt")
        try:
            await async_wait_until(lambda: output.connected, what="connected")
            await watch.start()
            watch.on_availability(Availability("main", True, time.time()))
            first = meter.raise_alert("Door open", "back door", 5)
            assert await watch.check("main") == 1
            own_broker.process.send_signal(signal.SIGSTOP)
            try:
                second = meter.raise_alert("Grid outage", "L1 lost", 7)
                assert await watch.check("main") == 0  # sent, never acknowledged
                reads = len(meter.calls_to("/log/alert"))
                assert await watch.check("main") == 0
                assert len(meter.calls_to("/log/alert")) == reads  # waits, no second copy
                saved = json.loads((state / STATE_FILE).read_text())
                assert saved["meters"]["main"]["last_id"] == first.id
            finally:
                own_broker.process.send_signal(signal.SIGCONT)
            sub.wait_for(f"{p}/main/alert", lambda m: m.json()["id"] == second.id)
            await async_wait_until(lambda: _pending_done(watch), what="the acknowledgement")
            assert watch.last_id("main") == first.id
            assert await watch.check("main") == 1
            assert watch.last_id("main") == second.id
            saved = json.loads((state / STATE_FILE).read_text())
            assert saved["meters"]["main"]["last_id"] == second.id
        finally:
            await output.stop()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await client.aclose()
        await asyncio.sleep(0)
    assert ids_on(sub, f"{p}/main/alert") == [first.id, second.id]


def _pending_done(watch: AlertWatch) -> bool:
    pending = watch.pending_ack("main")
    return pending is not None and pending.done()


# -- across a process restart -----------------------------------------------------------------


@pytest.fixture
def threaded_sim() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0702", password=PASSWORD, alert_period_s=0)
    with ThreadedSimServer([meter]) as server:
        yield meter, server.url_for(meter)


def test_alerts_appear_once_each_across_a_gateway_restart(
        broker: Broker, topic_prefix: str, tmp_path: Path,
        threaded_sim: tuple[SimMeter, str]) -> None:
    meter, url = threaded_sim
    p = topic_prefix
    topic = f"{p}/main/alert"
    state = tmp_path / "state"

    def text(modbus_port: int, http_port: int) -> str:
        base = config_text(broker, p, state, [MeterEntry("main", url, 1)],
                           modbus_port=modbus_port, http_port=http_port)
        return base.replace("    modbus_unit_id: 1\n",
                            "    modbus_unit_id: 1\n    alerts: {enabled: true, interval_s: 1}\n")

    def reads() -> int:
        return len(meter.calls_to("/log/alert"))

    with subscriber(broker, topic) as sub:
        first = meter.raise_alert("Door open", "back door", 5)
        with gateway_process(tmp_path, text) as gw:
            sub.wait_for(topic, lambda m: m.json()["id"] == first.id, timeout=20)
            seen = reads()
            wait_until(lambda: reads() >= seen + 1, what="another read of the alert log")
            gw.proc.send_signal(signal.SIGTERM)
            assert gw.proc.wait(20) == 0
        second = meter.raise_alert("Grid outage", "L1 lost", 7)  # while the gateway is down
        with gateway_process(tmp_path, text) as gw:
            received = sub.wait_for(topic, lambda m: m.json()["id"] == second.id, timeout=20)
            third = meter.raise_alert("Low battery", "sensor 3", 2)
            sub.wait_for(topic, lambda m: m.json()["id"] == third.id, timeout=20)
            seen = reads()
            wait_until(lambda: reads() >= seen + 2, what="two more reads of the alert log")
            gw.proc.send_signal(signal.SIGTERM)
            assert gw.proc.wait(20) == 0
    assert ids_on(sub, topic) == [first.id, second.id, third.id]
    assert isinstance(received, Received)
    assert received.json() == as_published("main", second)
    assert json.loads((state / STATE_FILE).read_text())["meters"] == {
        "main": {"last_id": third.id}}
