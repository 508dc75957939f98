"""SIGHUP reloads of a gateway subprocess: an added meter starts polling (its availability and
state appear on MQTT), a removed one stops (its retained topics are cleared), an invalid file
is refused and logged while the old meters keep being polled -- all without dropping the MQTT
session or a connected Modbus client, announced to systemd as RELOADING and READY."""

from __future__ import annotations

import signal
import socket
import struct
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.lifecycle import (
    PASSWORD,
    GatewayProcess,
    MeterEntry,
    config_text,
    gateway_process,
)
from tests.support.mqtt import Subscriber, subscriber
from tests.support.waiting import wait_until


@pytest.fixture
def sims() -> Iterator[tuple[SimMeter, SimMeter, ThreadedSimServer]]:
    a, b = SimMeter("SIM0501", password=PASSWORD), SimMeter("SIM0502", password=PASSWORD)
    with ThreadedSimServer([a, b]) as server:
        yield a, b, server


def mqtt_connects(gw: GatewayProcess) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "egauge_mqtt_connects_total":
                return float(sample.value)
    raise AssertionError("no egauge_mqtt_connects_total")


def modbus_online(conn: socket.socket, unit: int, tid: int) -> int | None:
    """FC04 of the status register ``online`` (address 0) on an open connection: its value,
    or None for an exception response."""
    conn.sendall(struct.pack(">HHHBBHH", tid, 0, 6, unit, 4, 0, 1))
    head = conn.recv(9)
    _, _, _, _, fc, second = struct.unpack(">HHHBBB", head)
    if fc & 0x80:
        return None
    assert second == 2
    return int(struct.unpack(">H", conn.recv(2))[0])


def config_for(broker: Broker, prefix: str, tmp_path: Path
               ) -> Callable[[list[MeterEntry], int, int], str]:
    """The config text of these meters (and the Modbus and HTTP ports) for this test."""
    def text(meters: list[MeterEntry], modbus_port: int, http_port: int) -> str:
        return config_text(broker, prefix, tmp_path / "state", meters,
                           modbus_port=modbus_port, http_port=http_port)
    return text


def states_after(sub: Subscriber, topic: str, index: int) -> int:
    return len(sub.on(topic)) - index


def test_sighup_adds_a_meter_and_keeps_sessions(
        broker: Broker, topic_prefix: str, tmp_path: Path,
        sims: tuple[SimMeter, SimMeter, ThreadedSimServer]) -> None:
    a, b, server = sims
    p = topic_prefix
    one = [MeterEntry("a", server.url_for(a), 1)]
    two = [*one, MeterEntry("b", server.url_for(b), 2)]
    text = config_for(broker, p, tmp_path)

    with subscriber(broker, f"{p}/#") as sub, gateway_process(
            tmp_path, lambda mp, hp: text(one, mp, hp)) as gw:
        ready = gw.wait_notification("READY=1")
        sub.wait_for(f"{p}/a/availability", lambda m: m.payload == b"online")
        assert not b.calls
        with socket.create_connection(("127.0.0.1", gw.modbus_port), timeout=5) as modbus:
            assert modbus_online(modbus, 1, 1) == 1
            wait_until(lambda: mqtt_connects(gw) == 1, what="one MQTT session")
            gw.rewrite(text(two, gw.modbus_port, gw.http_port))
            gw.proc.send_signal(signal.SIGHUP)
            reloading = gw.wait_notification("RELOADING=1", after=ready)
            gw.wait_notification("READY=1", after=reloading)
            reloaded = gw.wait_event("config_reloaded")
            assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["b"], [], [])
            sub.wait_for(f"{p}/b/availability", lambda m: m.payload == b"online")
            state = sub.wait_for(f"{p}/b/state")
            assert state.json()["meter"] == "b"
            # the command router and the request subscriptions know the new meter
            sub.client.publish(f"{p}/b/request/reboot", b"{}", qos=1)
            answer = sub.wait_for(f"{p}/b/response/reboot").json()
            assert (answer["meter"], answer["code"]) == ("b", "not_allowed")
            assert b.calls_to("/api/register")
            # the same Modbus connection now answers for the new unit too
            wait_until(lambda: modbus_online(modbus, 2, 2) == 1, what="unit 2 online")
            assert modbus_online(modbus, 1, 3) == 1
        seen = len(sub.on(f"{p}/a/state"))
        wait_until(lambda: states_after(sub, f"{p}/a/state", seen) >= 2, what="a still polled")
        assert mqtt_connects(gw) == 1  # the session was not dropped
        assert gw.stop() == 0


def test_sighup_removes_a_meter(broker: Broker, topic_prefix: str, tmp_path: Path,
                                sims: tuple[SimMeter, SimMeter, ThreadedSimServer]) -> None:
    a, b, server = sims
    p = topic_prefix
    two = [MeterEntry("a", server.url_for(a), 1), MeterEntry("b", server.url_for(b), 2)]
    text = config_for(broker, p, tmp_path)

    with subscriber(broker, f"{p}/#") as sub, gateway_process(
            tmp_path, lambda mp, hp: text(two, mp, hp)) as gw:
        sub.wait_for(f"{p}/b/state")
        sub.wait_for(f"{p}/a/availability", lambda m: m.payload == b"online")
        gw.rewrite(text(two[:1], gw.modbus_port, gw.http_port))
        gw.proc.send_signal(signal.SIGHUP)
        reloaded = gw.wait_event("config_reloaded")
        assert reloaded["removed"] == ["b"]
        sub.wait_for(f"{p}/b/availability", lambda m: m.payload == b"")
        wait_until(lambda: b.calls_to("/api/auth/logout"), what="b logged out")
        b_calls = len(b.calls)
        seen = len(sub.on(f"{p}/a/state"))
        wait_until(lambda: states_after(sub, f"{p}/a/state", seen) >= 3, what="a still polled")
        assert len(b.calls) == b_calls  # b is no longer polled
        with subscriber(broker, f"{p}/#") as late:  # nothing of b stays retained
            # the broker sends the retained messages before any live one
            late.wait_for(f"{p}/a/state", lambda m: not m.retain)
            assert late.last(f"{p}/a/availability") is not None
            assert [m.topic for m in late.messages if m.topic.startswith(f"{p}/b/")] == []
        assert gw.stop() == 0


def test_an_invalid_reload_is_refused_and_the_old_meters_keep_polling(
        broker: Broker, topic_prefix: str, tmp_path: Path,
        sims: tuple[SimMeter, SimMeter, ThreadedSimServer]) -> None:
    a, b, server = sims
    p = topic_prefix
    one = [MeterEntry("a", server.url_for(a), 1)]
    text = config_for(broker, p, tmp_path)

    with subscriber(broker, f"{p}/#") as sub, gateway_process(
            tmp_path, lambda mp, hp: text(one, mp, hp)) as gw:
        ready = gw.wait_notification("READY=1")
        sub.wait_for(f"{p}/a/availability", lambda m: m.payload == b"online")
        broken = text([*one, MeterEntry("b", "ftp://nowhere", 1)], gw.modbus_port, gw.http_port)
        gw.rewrite(broken)
        gw.proc.send_signal(signal.SIGHUP)
        refused = gw.wait_event("config_reload_refused")
        assert refused["level"] == "error"
        assert any(line.startswith("meters[1].url: must be http://") for line in
                   refused["problems"])
        assert any(line.startswith("meters[1].modbus_unit_id: duplicate unit id 1") for line
                   in refused["problems"])
        reloading = gw.wait_notification("RELOADING=1", after=ready)
        gw.wait_notification("READY=1", after=reloading)
        seen = len(sub.on(f"{p}/a/state"))
        wait_until(lambda: states_after(sub, f"{p}/a/state", seen) >= 2, what="a still polled")
        assert not gw.events("config_reloaded")
        assert f"{p}/b/availability" not in sub.topics()
        assert not b.calls
        assert gw.proc.poll() is None
        assert gw.stop() == 0
