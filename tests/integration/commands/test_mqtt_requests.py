"""Commands end to end: a real Mosquitto, the gateway's MQTT connection and request binding,
the router, the real WebApiClient and the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

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
async def gateway(broker: Broker, prefix: str, client: WebApiClient,
                  *allow: str) -> AsyncIterator[RequestBinding]:
    """The command side of a gateway for meter ``main``: connection, router, binding."""
    conn = MqttConnection(mqtt_config(broker, base_topic=prefix, protocol="5"),
                          client_id=f"{prefix}-gw")
    topics = Topics(base=prefix)
    router = CommandRouter({"main": client}, {"main": CommandPolicy(allow=allow)},
                           {"main": asyncio.Lock()}, is_online=lambda meter: True,
                           audit=AuditPublisher(conn, topics))
    binding = RequestBinding(conn, router, topics)
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
            props.ResponseTopic = f"{base}/replies/mine"
            props.CorrelationData = b"corr-7"
            sub.client.publish(f"{base}/main/request/config/get",
                               json.dumps({"path": "/net/hostname", "transaction": "v5"}),
                               qos=1, properties=props)
            direct = await sub.await_for(f"{base}/replies/mine")
            usual = await sub.await_for(f"{base}/main/response/config/get", by_transaction("v5"))
    assert direct.correlation_data == b"corr-7"
    assert direct.payload == usual.payload
    assert direct.json()["data"] == {"path": "/net/hostname", "value": sim_meter.hostname}


async def test_retained_requests_over_mqtt_are_not_run_nor_answered(
        broker: Broker, topic_prefix: str, client: WebApiClient, sim_meter: SimMeter) -> None:
    base = topic_prefix
    topic = f"{base}/main/request/relay"
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        stale = {"relay": 2, "state": "closed", "transaction": "stale"}
        sub.client.publish(topic, json.dumps(stale), qos=1, retain=True).wait_for_publish(5)
        try:
            async with gateway(broker, base, client, "relay"):
                audit = await sub.await_for(f"{base}/bridge/audit", by_transaction("stale"))
                fresh = {"relay": 3, "state": "closed", "transaction": "fresh"}
                sub.client.publish(topic, json.dumps(fresh), qos=1)
                await sub.await_for(f"{base}/main/response/relay", by_transaction("fresh"))
        finally:
            sub.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    assert (audit.json()["outcome"], audit.json()["note"]) == ("ignored", "retained")
    answers: list[Received] = sub.on(f"{base}/main/response/relay")
    assert [a.json()["transaction"] for a in answers] == ["fresh"]
    assert sim_meter.relays == (False, False, True)
