"""Commands end to end: a real Mosquitto, the gateway's MQTT connection and request binding,
the router, the real WebApiClient and the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.commands import CommandRouter
from gateway.config import CommandPolicy
from gateway.meter import WebApiClient
from gateway.mqtt import AuditPublisher, MqttConnection, RequestBinding, Topics
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import Received, mqtt_config, running, subscriber
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def gateway(broker: Broker, prefix: str, client: WebApiClient, *allow: str,
                  protocol: str = "5", lane: asyncio.Lock | None = None,
                  **binding_kw: Any) -> AsyncIterator[RequestBinding]:
    """The command side of a gateway for meter ``main``: connection, router, binding."""
    conn = MqttConnection(mqtt_config(broker, base_topic=prefix, protocol=protocol),
                          client_id=f"{prefix}-gw")
    topics = Topics(base=prefix)
    router = CommandRouter({"main": client}, {"main": CommandPolicy(allow=allow)},
                           {"main": lane or asyncio.Lock()}, is_online=lambda meter: True,
                           audit=AuditPublisher(conn, topics))
    binding = RequestBinding(conn, router, topics, **binding_kw)
    binding.attach()
    async with running(conn):
        task = asyncio.create_task(binding.run(), name="command-binding")
        try:
            await async_wait_until(lambda: conn.connected, what="gateway connected")
            yield binding
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def client(sim_server: SimServer, sim_meter: SimMeter) -> AsyncIterator[WebApiClient]:
    c = WebApiClient("main", sim_server.url_for(sim_meter), SIM_USERNAME, Secret(SIM_PASSWORD))
    yield c
    await c.aclose()


def by_transaction(transaction: str) -> object:
    return lambda m: json.loads(m.payload).get("transaction") == transaction


async def test_a_relay_request_over_mqtt_is_answered_and_audited(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter) -> None:
    base = topic_prefix
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        async with gateway(broker, base, client, "relay"):
            request = {"relay": 1, "state": "closed", "transaction": "e2e-1"}
            sub.client.publish(f"{base}/main/request/relay", json.dumps(request), qos=1)
            answer = await sub.await_for(f"{base}/main/response/relay",
                                         by_transaction("e2e-1"))
            audit = await sub.await_for(f"{base}/bridge/audit", by_transaction("e2e-1"))
    body = answer.json()
    assert (body["status"], body["code"], body["error"]) == ("ok", None, None)
    assert (body["meter"], body["action"], body["data"]["method"]) == ("main", "relay",
                                                                      "relay.close")
    assert sim_meter.relays == (True, False, False)
    assert (answer.qos, answer.retain) == (1, False)
    assert (audit.retain, audit.json()["outcome"], audit.json()["source"]) == (False, "ok",
                                                                             "mqtt")
    assert audit.json()["client"] == f"{base}/main/request/relay"


async def test_mqtt5_requests_are_answered_on_their_response_topic_too(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter) -> None:
    base = topic_prefix
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        async with gateway(broker, base, client, "config-read:/net"):
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = f"{base}/clients/mine"
            props.CorrelationData = b"corr-7"
            sub.client.publish(f"{base}/main/request/config/get",
                               json.dumps({"path": "/net/hostname", "transaction": "v5"}),
                               qos=1, properties=props)
            direct = await sub.await_for(f"{base}/clients/mine")
            usual = await sub.await_for(f"{base}/main/response/config/get", by_transaction("v5"))
    assert direct.correlation_data == b"corr-7"
    assert direct.payload == usual.payload
    assert direct.json()["data"] == {"path": "/net/hostname", "value": sim_meter.hostname}


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_a_retained_request_left_on_the_broker_is_not_run_nor_answered_after_restarts(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter,
        protocol: str) -> None:
    base = topic_prefix
    topic = f"{base}/main/request/relay"
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        stale = {"relay": 2, "state": "closed", "transaction": "stale"}
        sub.client.publish(topic, json.dumps(stale), qos=1, retain=True).wait_for_publish(5)
        try:
            for start in ("first", "restart"):
                sub.clear()
                async with gateway(broker, base, client, "relay", protocol=protocol):
                    audit = await sub.await_for(f"{base}/bridge/audit", by_transaction("stale"))
                    assert (audit.json()["outcome"], audit.json()["note"]) == ("ignored",
                                                                               "retained")
                    fresh = {"relay": 3, "state": "closed", "transaction": f"fresh-{start}"}
                    sub.client.publish(topic, json.dumps(fresh), qos=1)
                    await sub.await_for(f"{base}/main/response/relay",
                                        by_transaction(f"fresh-{start}"))
                answers: list[Received] = sub.on(f"{base}/main/response/relay")
                assert [a.json()["transaction"] for a in answers] == [f"fresh-{start}"]
        finally:
            sub.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    assert sim_meter.relays == (False, False, True)


async def test_a_retained_request_published_while_connected_is_not_run_under_mqtt5(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter) -> None:
    base = topic_prefix
    topic = f"{base}/main/request/relay"
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        try:
            async with gateway(broker, base, client, "relay", protocol="5") as binding:
                live = {"relay": 1, "state": "closed", "transaction": "live-retained"}
                sub.client.publish(topic, json.dumps(live), qos=1, retain=True)
                audit = await sub.await_for(f"{base}/bridge/audit",
                                            by_transaction("live-retained"))
                fence = {"relay": 3, "state": "closed", "transaction": "fence"}
                sub.client.publish(topic, json.dumps(fence), qos=1)
                await sub.await_for(f"{base}/main/response/relay", by_transaction("fence"))
                assert binding.received == 2
        finally:
            sub.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    assert (audit.json()["outcome"], audit.json()["note"]) == ("ignored", "retained")
    answers = sub.on(f"{base}/main/response/relay")
    assert [a.json()["transaction"] for a in answers] == ["fence"]
    assert sim_meter.relays == (False, False, True)  # relay 1 was never closed


def v5_request(sub: Any, topic: str, payload: dict[str, Any], response_topic: str,
               correlation: bytes) -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    sub.client.publish(topic, json.dumps(payload), qos=1, properties=props)


@pytest.mark.parametrize(("filters", "where"), [
    (None, "{base}/bridge/state"),
    (None, "{base}/main/availability"),
    (None, "{base}/main/request/config/get"),
    (None, "{base}/replies/mine"),
    (None, "{base}-elsewhere/replies"),
    (["#"], "{base}/bridge/state"),
    (["#"], "{base}/main/state"),
    (["#"], "{base}/ghost/response/config/get"),
    (["{base}/clients/#"], "{base}/clients/state"),
    ([], "{base}/clients/mine"),
])
async def test_a_response_topic_outside_response_topics_is_not_published_to(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter,
        filters: list[str] | None, where: str) -> None:
    base = topic_prefix
    refused = where.format(base=base)
    allowed = f"{base}/clients/fence"
    configured = None if filters is None else [f.format(base=base) for f in filters]
    if configured == []:
        configured, allowed = [f"{base}/fence/#"], f"{base}/fence/answer"
    with subscriber(broker, f"{base}/#", v5=True) as sub, \
            subscriber(broker, f"{base}-elsewhere/#", v5=True) as elsewhere:
        async with gateway(broker, base, client, "config-read:/net",
                           response_topics=configured):
            request = f"{base}/main/request/config/get"
            v5_request(sub, request, {"path": "/net/hostname", "transaction": "bad"},
                       refused, b"c-bad")
            usual = await sub.await_for(f"{base}/main/response/config/get",
                                        by_transaction("bad"))
            audit = await sub.await_for(f"{base}/bridge/audit", by_transaction("bad"))
            # published after it on the same connection: once it is here, so would the other be
            v5_request(sub, request, {"path": "/net/hostname", "transaction": "fence"},
                       allowed, b"c-fence")
            fence = await sub.await_for(allowed)
    assert usual.json()["status"] == "ok"
    assert audit.json()["note"] == "response_topic_refused"
    assert fence.correlation_data == b"c-fence"
    seen = [m for m in [*sub.on(refused), *elsewhere.on(refused)] if m.payload == usual.payload]
    assert seen == []


async def test_a_request_for_an_unknown_meter_is_answered_invalid(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter) -> None:
    base = topic_prefix
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        async with gateway(broker, base, client, "relay"):
            sub.client.publish(f"{base}/ghost/request/relay",
                               json.dumps({"relay": 1, "state": "closed", "transaction": "g"}),
                               qos=1)
            answer = await sub.await_for(f"{base}/ghost/response/relay", by_transaction("g"))
            audit = await sub.await_for(f"{base}/bridge/audit", by_transaction("g"))
    body = answer.json()
    assert (body["status"], body["code"], body["meter"]) == ("error", "invalid", "ghost")
    assert "unknown meter 'ghost'" in body["error"]
    assert (audit.json()["meter"], audit.json()["outcome"]) == ("ghost", "invalid")
    assert sim_meter.relays == (False, False, False)
    assert not [c for c in sim_meter.calls if c.path.startswith("/api/ctrl")]


async def test_requests_past_the_inbox_are_answered_busy(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter) -> None:
    base = topic_prefix
    lane = asyncio.Lock()
    topic = f"{base}/main/request/relay"
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        async with gateway(broker, base, client, "relay", lane=lane, inbox=2) as binding:
            await lane.acquire()  # the meter is busy: requests wait in the inbox
            try:
                for n in range(4):
                    sub.client.publish(topic, json.dumps(
                        {"relay": 1, "state": "closed", "transaction": f"r{n}"}), qos=1)
                await async_wait_until(lambda: binding.received == 4, what="4 requests")
                busy = [await sub.await_for(f"{base}/main/response/relay", by_transaction(t))
                        for t in ("r2", "r3")]
            finally:
                lane.release()
            held = [await sub.await_for(f"{base}/main/response/relay", by_transaction(t))
                    for t in ("r0", "r1")]
            audits = [await sub.await_for(f"{base}/bridge/audit", by_transaction(f"r{n}"))
                      for n in range(4)]
    assert [m.json()["code"] for m in busy] == ["busy", "busy"]
    assert "commands.inbox" in busy[0].json()["error"]
    assert [m.json()["status"] for m in held] == ["ok", "ok"]
    assert sorted(a.json()["outcome"] for a in audits) == ["busy", "busy", "ok", "ok"]
    assert binding.refused == 2
    assert len(sub.on(f"{base}/main/response/relay")) == 4  # exactly one answer each
