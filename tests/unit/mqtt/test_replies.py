"""Topic matching and the MQTT 5 response-topic policy."""

from __future__ import annotations

import pytest

from gateway.mqtt.replies import ResponseTopics
from gateway.mqtt.topics import Topics, topic_matches


@pytest.mark.parametrize(("topic_filter", "topic", "matches"), [
    ("a/b", "a/b", True),
    ("a/b", "a/c", False),
    ("a/+", "a/b", True),
    ("a/+", "a/b/c", False),
    ("a/+/c", "a//c", True),
    ("a/#", "a", True),
    ("a/#", "a/b/c", True),
    ("#", "anything/at/all", True),
    ("#", "$SYS/broker", False),
    ("+/x", "$SYS/x", False),
    ("$SYS/#", "$SYS/x", True),
    ("a/b", "a/b/", False),
])
def test_topic_matches_as_a_broker_does(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


def policy(filters: tuple[str, ...], bridge: str = "bridge",
           meters: tuple[str, ...] = ("main",)) -> ResponseTopics:
    return ResponseTopics(filters, Topics(base="egauge", bridge=bridge), lambda: meters,
                          lambda: ("egauge/+/request/#", "homeassistant/status"))


@pytest.mark.parametrize("topic", ["egauge/clients/app-1", "egauge/clients/app-1/replies/7"])
def test_the_default_namespace_is_allowed(topic: str) -> None:
    assert policy(("egauge/clients/#",)).allows(topic)


@pytest.mark.parametrize("topic", [
    "egauge/bridge/state", "egauge/bridge/audit", "egauge/main/availability",
    "egauge/main/anything", "egauge/ghost/state", "egauge/ghost/request/relay",
    "egauge/ghost/response/relay", "egauge/x/register/grid", "homeassistant/sensor/x/config",
    "homeassistant/status", "egauge/clients/state",
])
def test_the_gateways_own_topics_are_refused_whatever_the_filters(topic: str) -> None:
    assert not policy(("#",)).allows(topic)


def test_every_shard_instances_bridge_is_the_gateways_own() -> None:
    sharded = policy(("#",), bridge="bridge/site-1")
    assert not sharded.allows("egauge/bridge/site-0/state")


@pytest.mark.parametrize("topic", ["", "egauge/clients/+", "egauge/clients/#", "$SYS/x",
                                   "egauge/clients/\x00", "egauge/clients/\ud800",
                                   "egauge/clients/" + "x" * 70_000])
def test_topics_no_publish_may_use_are_refused(topic: str) -> None:
    assert not policy(("#",)).allows(topic)


def test_outside_the_filters_and_no_filters() -> None:
    assert not policy(("egauge/clients/#",)).allows("elsewhere/replies")
    assert not policy(("egauge/clients/#",)).allows("egauge/replies/mine")
    assert not policy(()).allows("egauge/clients/app")
