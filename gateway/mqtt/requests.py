"""The MQTT side of commands: request topics in, response and audit topics out.

One subscription, ``<base>/+/request/#``, covers the requests of every meter id, configured
or not, so that a request for an unknown meter is answered too (``invalid``; the router keeps
nothing for it). Requests for the meters of other shard instances are theirs to answer and
left alone; of a shard, an unknown id is answered by the one instance that would own it.
Each request goes to the :class:`~gateway.commands.CommandRouter`; its answer goes to
``<base>/<meter>/response/<action>`` (QoS 1, not retained) and, when an MQTT 5 request
names a response topic that :class:`~gateway.mqtt.replies.ResponseTopics` allows, there as
well with the request's correlation data. A refused response topic is not published to; the
request is audited with the note ``response_topic_refused``.

Under MQTT 5 the subscription is made with *retain-as-published*, so a request published
retained is recognised as such also when it is delivered live, and ignored (audited, not
executed, not answered). Under MQTT 3.1.1 the broker clears the retain flag of live
deliveries: only retained requests delivered on (re)subscription are recognised.

The inbox is bounded: at most ``commands.inbox`` requests are held at once -- received and not
yet answered -- each answered in its own task of the binding's task group; past that bound a
request is answered ``busy`` at once. A payload over the router's size limit (16 KiB) is
answered ``invalid`` at once and never held, so the inbox holds at most ``inbox`` x 16 KiB.
:class:`AuditPublisher` is the router's audit sink: one JSON message per request on
``<base>/bridge/audit`` (QoS 1, not retained).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

import structlog

from gateway.commands import CommandRequest, CommandResponse, CommandRouter
from gateway.errors import ErrorCode
from gateway.mqtt.message import Handler, InboundMessage
from gateway.mqtt.replies import ResponseTopics
from gateway.mqtt.topics import Topics

log = structlog.get_logger(__name__)

QOS = 1
INBOX = 256  # requests held at once (commands.inbox)
REFUSED_TOPIC = "response_topic_refused"


class Broker(Protocol):
    """What the binding needs of :class:`gateway.mqtt.connection.MqttConnection`."""

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1, *,
                  retain_as_published: bool = False) -> None: ...

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                droppable: bool = False, correlation_data: bytes | None = None) -> None: ...

    @property
    def subscriptions(self) -> tuple[str, ...]: ...


class AuditPublisher:
    """Publishes each audit event (a JSON object) to ``<base>/bridge/audit``."""

    def __init__(self, broker: Broker, topics: Topics) -> None:
        self._broker = broker
        self._topic = topics.bridge_audit

    def __call__(self, event: Mapping[str, Any]) -> None:
        payload = json.dumps(dict(event), separators=(",", ":"), default=str)
        self._broker.publish(self._topic, payload, QOS, False)


class RequestBinding:
    """Feeds request messages to the router and publishes its answers.

    ``attach()`` subscribes; ``run()`` handles the messages, each in its own task of the
    binding's task group, until cancelled (which cancels the requests still running).
    ``meters``: the ids served (default: the router's); ``foreign``: gives the ids that other
    shard instances serve (read at every request: a reload changes them); ``owns``: whether
    this instance answers a request for a meter nobody serves (of a shard, only the one that
    would own that id: one answer per request);
    ``response_topics``: the filters an MQTT 5 response topic must match
    (``mqtt.response_topics``; default ``<base>/clients/#``); ``inbox``: how many requests
    are held at once (``commands.inbox``)."""

    def __init__(self, broker: Broker, router: CommandRouter, topics: Topics,
                 meters: Iterable[str] | None = None, *,
                 foreign: Callable[[], Collection[str]] = tuple,
                 owns: Callable[[str], bool] = lambda meter: True,
                 inbox: int = INBOX, response_topics: Sequence[str] | None = None) -> None:
        self._broker = broker
        self._router = router
        self._topics = topics
        self._meters = tuple(router.meters if meters is None else meters)
        self._foreign = foreign
        self._owns = owns
        self._foreign_seen: tuple[Collection[str], frozenset[str]] = ((), frozenset())
        self._limit = inbox
        filters = (f"{topics.base}/clients/#",) if response_topics is None else response_topics
        self._replies = ResponseTopics(filters, topics, self._known,
                                       lambda: broker.subscriptions)
        self._prefix = topics.base + "/"
        self._bridge = topics.bridge.split("/")[0]
        self._attached = False
        self._inbox: asyncio.Queue[tuple[CommandRequest, str | None, bytes | None]] = (
            asyncio.Queue(maxsize=inbox))
        self._held = 0  # requests received and not yet answered (the inbox's bound)
        self._done = asyncio.Event()
        self._done.set()
        self.received = 0
        self.refused = 0  # answered busy because the inbox was full

    @property
    def response_topics(self) -> ResponseTopics:
        return self._replies

    def attach(self) -> None:
        """Subscribe ``<base>/+/request/#`` (once; kept across reconnects)."""
        if not self._attached:
            self._broker.subscribe(self._topics.request_filter(), self._receive, QOS,
                                   retain_as_published=True)
            self._attached = True

    def set_meters(self, meters: Iterable[str]) -> None:
        """Serve these meters from now on (a configuration reload): requests for a removed
        one are answered ``invalid`` (unknown meter) from then on."""
        self._meters = tuple(meters)
        self.attach()

    def _known(self) -> tuple[str, ...]:
        return (*self._meters, *self._foreign_ids())

    def _foreign_ids(self) -> frozenset[str]:
        """The other shard instances' meters (read each time: a reload changes them)."""
        current = self._foreign()
        seen, ids = self._foreign_seen
        if current is not seen:
            ids = frozenset(current)
            self._foreign_seen = (current, ids)
        return ids

    def _address(self, topic: str) -> tuple[str, str] | None:
        """``(meter, action)`` of a request topic ``<base>/<meter>/request/<action>``."""
        if not topic.startswith(self._prefix):
            return None
        meter, _, tail = topic[len(self._prefix):].partition("/")
        if not tail.startswith("request/") or meter == self._bridge or (
                meter in self._foreign_ids()):
            return None
        if meter not in self._meters and not self._owns(meter):
            return None  # an unknown id that another shard instance answers
        return meter, tail[len("request/"):]

    def _receive(self, message: InboundMessage) -> None:
        """A message on the request filter (on the loop): queued, or answered ``busy`` at
        once when the inbox is full."""
        address = self._address(message.topic)
        if address is None:
            return
        meter, action = address
        reply_to: str | None = None
        notes: tuple[str, ...] = ()
        asks = bool(message.response_topic) and not message.retain and bool(message.payload)
        if asks and message.response_topic is not None:
            if self._replies.allows(message.response_topic):
                reply_to = message.response_topic
            else:
                notes = (REFUSED_TOPIC,)
        request = CommandRequest(meter, action, message.payload, message.retain, "mqtt",
                                 message.topic, notes)
        self.received += 1
        limit = self._router.limits.max_payload
        if len(message.payload) > limit:  # never held: the inbox bounds bytes as well
            response = self._router.refuse(
                request, ErrorCode.INVALID, f"the payload is larger than {limit} bytes")
            self._publish(request, response, reply_to, message.correlation_data)
            return
        if self._held >= self._limit:
            self.refused += 1
            response = self._router.refuse(
                request, ErrorCode.BUSY, f"the gateway holds {self._held} requests already "
                "(commands.inbox); nothing was sent, try again later")
            self._publish(request, response, reply_to, message.correlation_data)
            return
        self._held += 1
        self._done.clear()
        self._inbox.put_nowait((request, reply_to, message.correlation_data))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                request, reply_to, correlation = await self._inbox.get()
                group.create_task(self._answer(request, reply_to, correlation),
                                  name=f"command-{request.meter}-{self.received}")

    async def drain(self) -> None:
        """Wait until every request received so far is answered (at shutdown; the router
        refuses what arrives from now on)."""
        while self._held:
            await self._done.wait()

    async def _answer(self, request: CommandRequest, reply_to: str | None,
                      correlation: bytes | None) -> None:
        try:
            response = await self._router.handle(request)
            self._publish(request, response, reply_to, correlation)
        finally:
            self._held -= 1
            if not self._held:
                self._done.set()

    def _publish(self, request: CommandRequest, response: CommandResponse | None,
                 reply_to: str | None, correlation: bytes | None) -> None:
        if response is None:
            return
        payload = response.encode()
        self._broker.publish(self._topics.response(request.meter, request.action), payload,
                             QOS, False)
        if reply_to:
            self._broker.publish(reply_to, payload, QOS, False, correlation_data=correlation)
