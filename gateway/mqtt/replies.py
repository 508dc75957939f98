"""Which MQTT 5 response topics the gateway answers on.

A request may name a *response topic*; answering there makes the gateway publish on a topic
the requester chose. :class:`ResponseTopics` allows one only when it matches one of
``mqtt.response_topics`` (default ``<base>/clients/#``) and none of the topics the gateway
publishes or subscribes itself (:meth:`gateway.mqtt.topics.Topics.own_filters` and the
connection's subscriptions), whatever the configured filters say. A refused response topic
is not published to; the answer goes to ``<base>/<meter>/response/<action>`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from gateway.mqtt.topics import Topics, topic_matches

MAX_TOPIC_BYTES = 65535  # an MQTT topic's length field


class ResponseTopics:
    """The policy for MQTT 5 response topics. ``meters`` gives the meter ids whose topics
    are the gateway's (its own and other shard instances'), ``subscribed`` the filters its
    connection subscribes; both are read at every check (a reload changes them)."""

    def __init__(self, filters: Sequence[str], topics: Topics,
                 meters: Callable[[], Iterable[str]],
                 subscribed: Callable[[], Iterable[str]] = tuple) -> None:
        self._filters = tuple(filters)
        self._topics = topics
        self._meters = meters
        self._subscribed = subscribed

    @property
    def filters(self) -> tuple[str, ...]:
        return self._filters

    def allows(self, topic: str) -> bool:
        """Whether an answer may be published on ``topic``."""
        if not _publishable(topic):
            return False
        if not any(topic_matches(f, topic) for f in self._filters):
            return False
        own = (*self._topics.own_filters(self._meters()), *self._subscribed())
        return not any(topic_matches(f, topic) for f in own)


def _publishable(topic: str) -> bool:
    if not topic or topic.startswith("$") or any(c in topic for c in "+#\x00"):
        return False
    try:
        return len(topic.encode("utf-8")) <= MAX_TOPIC_BYTES
    except UnicodeEncodeError:
        return False
