"""MqttConnection against a real Mosquitto: publish/subscribe, MQTT 5 replies, the bounded
queue while the broker is down, reconnect hooks, passwords and TLS."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttTls
from gateway.mqtt import InboundMessage, MqttConnection
from gateway.mqtt.connection import DISPATCH_BATCH
from gateway.secret import Secret
from tests.support.broker import Broker
from tests.support.logcapture import capture_logs_stamped
from tests.support.mqtt import (
    legacy_broker,
    mqtt_config,
    password_broker,
    running,
    subscriber,
    tls_broker,
)
from tests.support.waiting import async_wait_until


async def test_publish_and_subscribe_roundtrip(broker: Broker, topic_prefix: str) -> None:
    conn = MqttConnection(mqtt_config(broker), client_id=f"{topic_prefix}-gw")
    inbox: list[InboundMessage] = []
    conn.subscribe(f"{topic_prefix}/in/#", inbox.append)
    with subscriber(broker, f"{topic_prefix}/out/#") as sub:
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="connected")
            conn.publish(f"{topic_prefix}/out/a", "hello", qos=1)
            conn.publish(f"{topic_prefix}/out/b", b"\x00\x01", qos=0)
            got = await sub.await_for(f"{topic_prefix}/out/a")
            assert got.payload == b"hello"
            assert got.qos == 1
            assert (await sub.await_for(f"{topic_prefix}/out/b")).payload == b"\x00\x01"
            # something else publishes to the gateway: the handler gets the project's type
            sub.client.publish(f"{topic_prefix}/in/x/y", b"ping", qos=1)
            await async_wait_until(lambda: inbox, what="inbound message")
    [msg] = inbox
    assert msg == InboundMessage(f"{topic_prefix}/in/x/y", b"ping", 1, False, None, None)
    assert conn.stats.published == 2
    assert conn.stats.received == 1


async def test_mqtt5_request_with_response_topic_and_correlation_data(
    broker: Broker, topic_prefix: str
) -> None:
    conn = MqttConnection(mqtt_config(broker, protocol="5"), client_id=f"{topic_prefix}-gw")

    def answer(msg: InboundMessage) -> None:
        assert msg.response_topic is not None
        conn.publish(msg.response_topic, b"pong:" + msg.payload, qos=1,
                     correlation_data=msg.correlation_data)

    conn.subscribe(f"{topic_prefix}/request", answer)
    with subscriber(broker, f"{topic_prefix}/reply", v5=True) as sub:
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="connected")
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"{topic_prefix}/reply"
            props.CorrelationData = b"corr-42"
            sub.client.publish(f"{topic_prefix}/request", b"x", qos=1, properties=props)
            reply = await sub.await_for(f"{topic_prefix}/reply")
    assert reply.payload == b"pong:x"
    assert reply.correlation_data == b"corr-42"


async def test_queue_while_disconnected_drops_oldest_droppable_first(
    own_broker: Broker, topic_prefix: str
) -> None:
    conn = MqttConnection(mqtt_config(own_broker, queue_limit=4), client_id=f"{topic_prefix}-gw",
                          retry_min_s=0.05, retry_max_s=0.2)
    announced: list[float] = []
    conn.on_connected(lambda: announced.append(time.monotonic()))
    with structlog.testing.capture_logs() as logs:
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="connected")
            own_broker.stop()
            await async_wait_until(lambda: not conn.connected, what="disconnect noticed")
            p = topic_prefix
            conn.publish(f"{p}/state/1", b"s1", 1, True, droppable=True)
            conn.publish(f"{p}/avail", b"online", 1, True)
            conn.publish(f"{p}/state/2", b"s2", 1, True, droppable=True)
            conn.publish(f"{p}/state/3", b"s3", 1, True, droppable=True)
            conn.publish(f"{p}/device", b"dev", 1, True)
            conn.publish(f"{p}/state/4", b"s4", 1, True, droppable=True)
            # 6 messages, room for 4: the two oldest droppable ones go
            assert conn.stats.dropped == 2
            assert conn.stats.queued == 4
            own_broker.start()
            await async_wait_until(lambda: len(announced) == 2, timeout=15, what="reconnect")
            with subscriber(own_broker, f"{p}/#") as sub:
                await sub.await_for(f"{p}/state/4")
                await sub.await_for(f"{p}/device")
                await sub.await_for(f"{p}/avail")
                await sub.await_for(f"{p}/state/3")
                assert sub.topics() == {f"{p}/avail", f"{p}/state/3", f"{p}/device",
                                        f"{p}/state/4"}
            assert conn.stats.queued == 0
    assert [e["event"] for e in logs].count("mqtt_connected") == 2
    assert any(e["event"] == "mqtt_disconnected" for e in logs)
    assert [e for e in logs if e["event"] == "mqtt_queue_full"] == [
        {"event": "mqtt_queue_full", "limit": 4, "log_level": "warning"}]


async def test_password_broker_right_credentials(tmp_path: Path, topic_prefix: str) -> None:
    broker = password_broker(tmp_path / "pw", {"gateway": "s3cret-pass"})
    try:
        cfg = mqtt_config(broker, username="gateway", password=Secret("s3cret-pass"))
        conn = MqttConnection(cfg, client_id=f"{topic_prefix}-gw")
        with subscriber(broker, f"{topic_prefix}/#", username="gateway",
                        password="s3cret-pass") as sub:
            async with running(conn):
                await async_wait_until(lambda: conn.connected, what="connected")
                conn.publish(f"{topic_prefix}/x", b"1", 1)
                await sub.await_for(f"{topic_prefix}/x")
    finally:
        broker.stop()


async def test_wrong_credentials_are_logged_and_retried_with_growing_gaps(
    tmp_path: Path, topic_prefix: str
) -> None:
    broker = password_broker(tmp_path / "pw", {"gateway": "s3cret-pass"})
    try:
        cfg = mqtt_config(broker, username="gateway", password=Secret("wrong-password-xyz"))
        conn = MqttConnection(cfg, client_id=f"{topic_prefix}-gw", retry_min_s=0.1,
                              retry_max_s=5.0)
        with capture_logs_stamped() as logs:
            async with running(conn) as task:
                def failures() -> list[dict[str, object]]:
                    return [e for e in logs if e["event"] == "mqtt_connect_failed"]

                await async_wait_until(lambda: len(failures()) >= 4, timeout=20,
                                       what="four failed attempts")
                assert not task.done()  # never a crash
                assert not conn.connected
        attempts = failures()[:4]
        assert [e["attempt"] for e in attempts] == [1, 2, 3, 4]
        for e in attempts:
            assert e["reason"] == "not authorized"
        announced = [float(e["retry_in_s"]) for e in attempts]  # type: ignore[arg-type]
        assert announced == sorted(announced)
        assert announced[0] < announced[-1]
        times = [float(e["timestamp"]) for e in attempts]  # type: ignore[arg-type]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] < gaps[1] < gaps[2], gaps
        assert "wrong-password-xyz" not in repr(logs)
        assert conn.stats.connect_failures >= 4
    finally:
        broker.stop()


async def test_tls_with_ca_and_client_certificate(tmp_path: Path, topic_prefix: str) -> None:
    broker, files = tls_broker(tmp_path / "tls", require_client_cert=True)
    try:
        tls = MqttTls(ca_file=str(files.ca_file), cert_file=str(files.client_cert),
                      key_file=str(files.client_key))
        conn = MqttConnection(mqtt_config(broker, tls=tls), client_id=f"{topic_prefix}-gw")
        inbox: list[InboundMessage] = []
        conn.subscribe(f"{topic_prefix}/echo", inbox.append)
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="TLS connection")
            conn.publish(f"{topic_prefix}/echo", b"over tls", 1)
            await async_wait_until(lambda: inbox, what="own message back")
        assert inbox[0].payload == b"over tls"
    finally:
        broker.stop()


async def test_tls_untrusted_server_fails_clearly_unless_insecure(
    tmp_path: Path, topic_prefix: str
) -> None:
    import trustme

    broker, _ = tls_broker(tmp_path / "tls")
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(trustme.CA().cert_pem.bytes())
    try:
        strict = MqttConnection(mqtt_config(broker, tls=MqttTls(ca_file=str(other_ca))),
                                client_id=f"{topic_prefix}-a", retry_min_s=0.1)
        with structlog.testing.capture_logs() as logs:
            async with running(strict):
                await async_wait_until(
                    lambda: any(e["event"] == "mqtt_connect_failed" for e in logs),
                    what="a failed TLS attempt")
        failed = next(e for e in logs if e["event"] == "mqtt_connect_failed")
        assert "certificate verify failed" in str(failed["reason"])
        insecure = MqttConnection(
            mqtt_config(broker, tls=MqttTls(ca_file=str(other_ca), insecure=True)),
            client_id=f"{topic_prefix}-b")
        async with running(insecure):
            await async_wait_until(lambda: insecure.connected, what="insecure TLS connection")
    finally:
        broker.stop()


async def test_refused_port_is_retried_not_raised(topic_prefix: str) -> None:
    from tests.support.broker import free_port

    cfg = mqtt_config(Broker("127.0.0.1", free_port(), None, Path(), Path()))
    conn = MqttConnection(cfg, client_id=f"{topic_prefix}-gw", retry_min_s=0.05)
    with structlog.testing.capture_logs() as logs:
        async with running(conn) as task:
            await async_wait_until(
                lambda: sum(e["event"] == "mqtt_connect_failed" for e in logs) >= 2,
                what="two refused attempts")
            assert not task.done()
    reasons = {e["reason"] for e in logs if e["event"] == "mqtt_connect_failed"}
    assert reasons == {"connection refused"}
    conn.publish("x/y", b"kept", 1)  # never raises while disconnected
    assert conn.stats.queued == 1
    await asyncio.sleep(0)


async def test_auto_uses_mqtt5_where_the_broker_speaks_it(broker: Broker,
                                                         topic_prefix: str) -> None:
    conn = MqttConnection(mqtt_config(broker), client_id=f"{topic_prefix}-gw")
    async with running(conn):
        await async_wait_until(lambda: conn.connected, what="connected")
    assert conn.protocol == "5"


async def test_auto_falls_back_to_311_when_the_broker_refuses_mqtt5(
        broker: Broker, topic_prefix: str) -> None:
    async with legacy_broker(broker) as legacy:
        cfg = mqtt_config(broker, protocol="auto")
        conn = MqttConnection(replace(cfg, port=legacy.port), client_id=f"{topic_prefix}-gw")
        with structlog.testing.capture_logs() as logs, \
                subscriber(broker, f"{topic_prefix}/out") as sub:
            async with running(conn):
                await async_wait_until(lambda: conn.connected, what="connected")
                conn.publish(f"{topic_prefix}/out", b"over 3.1.1", qos=1)
                assert (await sub.await_for(f"{topic_prefix}/out")).payload == b"over 3.1.1"
    assert conn.protocol == "3.1.1"
    assert legacy.refused_v5 == 1
    [fallback] = [e for e in logs if e["event"] == "mqtt_protocol_fallback"]
    assert (fallback["refused"], fallback["protocol"]) == ("5", "3.1.1")
    assert conn.stats.connect_failures == 0
    assert "mqtt_connect_failed" not in [e["event"] for e in logs]


async def test_an_explicit_mqtt5_does_not_fall_back(broker: Broker, topic_prefix: str) -> None:
    async with legacy_broker(broker) as legacy:
        cfg = replace(mqtt_config(broker, protocol="5"), port=legacy.port)
        conn = MqttConnection(cfg, client_id=f"{topic_prefix}-gw", retry_min_s=0.05,
                              retry_max_s=0.1)
        with structlog.testing.capture_logs() as logs:
            async with running(conn):
                await async_wait_until(lambda: legacy.refused_v5 >= 2, what="two refusals")
                assert not conn.connected
    assert conn.protocol == "5"
    failed = [e for e in logs if e["event"] == "mqtt_connect_failed"]
    assert failed[0]["reason"] == "unsupported protocol version"


async def test_a_flood_is_handed_out_in_batches_with_backpressure(
        broker: Broker, topic_prefix: str) -> None:
    """Thousands of messages read at once (with many of the gateway's own QoS 1 messages in
    flight paho reads as many packets per turn): the handlers get every one, in order, at
    most a batch per turn of the loop, and the socket is left unread while too many wait."""
    conn = MqttConnection(mqtt_config(broker), client_id=f"{topic_prefix}-gw")
    got: list[bytes] = []
    turns = 0
    seen_turns: list[int] = []
    flood = [str(n).encode() for n in range(4000)]

    with subscriber(broker, f"{topic_prefix}/none") as sub:
        def handle(msg: InboundMessage) -> None:
            got.append(msg.payload)
            seen_turns.append(turns)
            if len(got) == 1:  # a slow handler, while our messages and a flood are sent
                for _ in range(2000):
                    conn.publish(f"{topic_prefix}/out", b"x", qos=1)
                for payload in flood:
                    sub.client.publish(f"{topic_prefix}/in", payload, qos=0)
                time.sleep(1.0)

        async def ticker() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        conn.subscribe(f"{topic_prefix}/in", handle, qos=0)
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="connected")
            tick = asyncio.create_task(ticker(), name="ticker")
            try:
                sub.client.publish(f"{topic_prefix}/in", b"first", qos=0)
                await async_wait_until(lambda: len(got) == 4001, timeout=30,
                                       what="every message handed out")
            finally:
                tick.cancel()
    assert got == [b"first", *flood]
    assert max(Counter(seen_turns[1:]).values()) <= DISPATCH_BATCH
    assert conn.stats.read_pauses >= 1
