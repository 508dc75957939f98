"""The instance's own MQTT topics when worker processes share it (``gateway.workers`` > 1).

The supervisor publishes, on a connection of its own (client id and will as a single
process has them), what a single process publishes about itself: ``<base>/bridge/state``
(``online``; the will says ``offline``), ``<base>/bridge/info`` (the instance's meters, its
outputs and which worker polls which meter) and the Home Assistant bridge device, again when
Home Assistant announces itself. The workers publish their meters; their discovery points at
this ``bridge/state`` and at this device, so Home Assistant sees one gateway as with a single
process. When a worker dies, :meth:`GatewayBridge.meters_offline` marks its meters' retained
``availability`` offline until the restarted worker polls them again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from gateway import __version__
from gateway.config import Config, ShardConfig, shard
from gateway.mqtt.connection import ConnectionStats, MqttConnection, Will
from gateway.mqtt.discovery import bridge_config
from gateway.mqtt.message import InboundMessage
from gateway.mqtt.output import OFFLINE, ONLINE, session_topics, topics_of

log = structlog.get_logger(__name__)


class GatewayBridge:
    """``bridge/state``, ``bridge/info`` and the bridge device of one gateway instance."""

    def __init__(self, config: Config, workers: Sequence[Sequence[str]],
                 outputs: Callable[[], Sequence[str]] = lambda: ("mqtt",)) -> None:
        """``workers``: the meter ids of each worker, by worker index."""
        cfg = config.mqtt
        self.topics = topics_of(config)
        self._config = config
        self._name = shard.instance_name(config)
        self._workers = [list(meters) for meters in workers]
        self._outputs = outputs
        self._started = time.time()
        self.connection = MqttConnection(
            cfg, client_id=shard.suffixed(config, cfg.client_id
                                          or f"egauge-gateway-{config.gateway.id}"),
            will=Will(self.topics.bridge_state, OFFLINE, 1, True))

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def stats(self) -> ConnectionStats:
        return self.connection.stats

    async def start(self) -> None:
        self.connection.on_connected(self._announce)
        if self._config.mqtt.homeassistant.enabled:
            self.connection.subscribe(self.topics.discovery_status, self._ha_status)

    async def serve(self) -> None:
        await self.connection.run()

    async def stop(self, grace_s: float = 2.0) -> None:
        """``bridge/state`` offline, then a clean DISCONNECT (no will)."""
        self.connection.publish(self.topics.bridge_state, OFFLINE, 1, True)
        await self.connection.close(grace_s=grace_s)

    def set_workers(self, workers: Sequence[Sequence[str]]) -> None:
        """The meters of each worker changed (a reload): publish ``bridge/info`` again."""
        self._workers = [list(meters) for meters in workers]
        self.connection.publish(self.topics.bridge_info, self._info_json(), 1, True)

    def meters_offline(self, meters: Sequence[str]) -> None:
        """Show these meters offline (their worker died; its restart shows them again)."""
        for meter in meters:
            self.connection.publish(self.topics.availability(meter), OFFLINE, 1, True)

    def _announce(self) -> None:
        conn = self.connection
        conn.publish(self.topics.bridge_state, ONLINE, 1, True)
        conn.publish(self.topics.bridge_info, self._info_json(), 1, True)
        self._announce_device()

    def _announce_device(self) -> None:
        if self._config.mqtt.homeassistant.enabled:
            self.connection.publish(*bridge_config(self.topics, self._name), 1, True)

    def _ha_status(self, message: InboundMessage) -> None:
        if message.payload.strip().lower() == ONLINE:
            self._announce_device()

    def _info_json(self) -> bytes:
        count = len(self._workers)
        workers = []
        for index, meters in enumerate(self._workers):
            view = replace(self._config, worker=ShardConfig(index, count))
            workers.append({"worker": index, "meters": meters,
                            "bridge": session_topics(view).bridge_state.rsplit("/", 1)[0]})
        return json.dumps(
            {"id": self._name, "version": __version__,
             "meters": [m for meters in self._workers for m in meters],
             "outputs": list(self._outputs()), "started": round(self._started, 3),
             "workers": workers},
            separators=(",", ":"),
        ).encode("utf-8")
