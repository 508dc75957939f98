"""The MQTT side of commands: request topics in, response and audit topics out.

``<base>/<meter>/request/<action>`` (one subscription per configured meter) goes to the
:class:`~gateway.commands.CommandRouter`; its answer goes to
``<base>/<meter>/response/<action>``
(QoS 1, not retained) and, when an MQTT 5 request names a response topic, there as well with
the request's correlation data. A retained request gets no answer (the router ignores it).
:class:`AuditPublisher` is the router's audit sink: one JSON message per request on
``<base>/bridge/audit`` (QoS 1, not retained).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import structlog

from gateway.commands import CommandRequest, CommandRouter
from gateway.mqtt.message import Handler, InboundMessage
from gateway.mqtt.topics import Topics

log = structlog.get_logger(__name__)

QOS = 1


class Broker(Protocol):
    """What the binding needs of :class:`gateway.mqtt.connection.MqttConnection`."""

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None: ...

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False, *,
                droppable: bool = False, correlation_data: bytes | None = None) -> None: ...


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
    binding's task group, until cancelled (which cancels the requests still running)."""

    def __init__(self, broker: Broker, router: CommandRouter, topics: Topics,
                 meters: Iterable[str] | None = None) -> None:
        self._broker = broker
        self._router = router
        self._topics = topics
        self._meters = tuple(router.meters if meters is None else meters)
        self._subscribed: set[str] = set()
        self._inbox: asyncio.Queue[tuple[str, InboundMessage]] = asyncio.Queue()
        self._answering = 0  # requests taken from the inbox and not yet answered
        self._done = asyncio.Event()
        self._done.set()
        self.received = 0

    def attach(self) -> None:
        """Subscribe ``<base>/<meter>/request/#`` for every meter."""
        for meter in self._meters:
            if meter in self._subscribed:
                continue
            prefix = self._topics.request(meter, "")
            self._broker.subscribe(prefix + "#", self._receiver(meter, prefix), QOS)
            self._subscribed.add(meter)

    def set_meters(self, meters: Iterable[str]) -> None:
        """Serve these meters from now on (a configuration reload): new ones are subscribed,
        requests for removed ones are dropped unanswered."""
        self._meters = tuple(meters)
        self.attach()

    def _receiver(self, meter: str, prefix: str) -> Handler:
        def receive(message: InboundMessage) -> None:
            if message.topic.startswith(prefix) and meter in self._meters:
                self._inbox.put_nowait((meter, message))
        return receive

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                meter, message = await self._inbox.get()
                self.received += 1
                self._answering += 1
                self._done.clear()
                group.create_task(self._answer(meter, message),
                                  name=f"command-{meter}-{self.received}")

    async def drain(self) -> None:
        """Wait until every request received so far is answered (at shutdown; the router
        refuses what arrives from now on)."""
        while not self._inbox.empty() or self._answering:
            await self._done.wait()
            await asyncio.sleep(0)  # let run() take what is still in the inbox

    async def _answer(self, meter: str, message: InboundMessage) -> None:
        try:
            await self._respond(meter, message)
        finally:
            self._answering -= 1
            if not self._answering:
                self._done.set()

    async def _respond(self, meter: str, message: InboundMessage) -> None:
        action = message.topic[len(self._topics.request(meter, "")):]
        request = CommandRequest(meter, action, message.payload, message.retain, "mqtt",
                                 message.topic)
        response = await self._router.handle(request)
        if response is None:
            return
        payload = response.encode()
        self._broker.publish(self._topics.response(meter, action), payload, QOS, False)
        if message.response_topic:
            self._broker.publish(message.response_topic, payload, QOS, False,
                                 correlation_data=message.correlation_data)
