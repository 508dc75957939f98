"""EdgeNode: the Sparkplug session of the gateway as one Edge Node (its meters the Devices).

Its MQTT connection's will is the NDEATH with the ``bdSeq`` of that connection
(:mod:`gateway.sparkplug.session`). On every MQTT session, once the primary host (when one is
configured) is online, it sends the birth sequence: NBIRTH (``seq`` 0) and the DBIRTH of
every meter that is ready; a rebirth does the same with the same ``bdSeq``. Every message is
QoS 0, not retained, and sent only within the session it belongs to (never queued into the
next one); the NDEATH is QoS 1. :class:`gateway.sparkplug.output.SparkplugOutput` adds the
hub sink, the service and what hosts send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.config import Config, shard
from gateway.mqtt import MqttConnection, Will
from gateway.sparkplug import metrics as m
from gateway.sparkplug.aliases import FILE_NAME, AliasBook
from gateway.sparkplug.device import Device, SlugOf, ms
from gateway.sparkplug.host import PrimaryHost
from gateway.sparkplug.payload import DataType, Metric, Payload, Value, encode
from gateway.sparkplug.session import BdSeq, Seq
from gateway.sparkplug.topics import SparkplugTopics

log = structlog.get_logger(__name__)

ALIAS_SAVE_S = 1.0


@dataclass(slots=True)
class SparkplugStats:
    """Counters for status pages and metrics."""

    births: int = 0  # NBIRTHs (including rebirths)
    rebirths: int = 0  # of them asked for by NCMD
    sent: int = 0
    malformed: int = 0  # NCMD, DCMD or STATE payloads that could not be read
    ignored: int = 0  # commands with nothing to do (unknown metric or device, retained, ...)
    commands: int = 0  # DCMD writes answered by the command router


class EdgeNode:
    """The session state of the Edge Node and the messages that make it up."""

    def __init__(self, config: Config, connection: MqttConnection, slug_of: SlugOf,
                 wall: Callable[[], float] = time.time) -> None:
        cfg = self.cfg = config.sparkplug
        node = shard.suffixed(config, cfg.edge_node_id or config.gateway.id)
        self.topics = SparkplugTopics(cfg.group_id, node)
        self._conn = connection
        self._slug_of = slug_of
        self._wall = wall
        state_dir = shard.instance_dir(config) / "sparkplug"
        self.bdseq = BdSeq(state_dir / "session.json")
        self.aliases = AliasBook(state_dir / FILE_NAME)
        self.seq = Seq()
        self.devices = {meter.id: Device(meter) for meter in config.meters}
        self.host = PrimaryHost(cfg.primary_host_id) if cfg.primary_host_id else None
        self.stats = SparkplugStats()
        self.born = False  # the NBIRTH of the current session went out
        self._session = False  # an MQTT session is up
        self._node_sent: dict[str, Value] = {}
        connection.will_from(self._will)

    @property
    def connection(self) -> MqttConnection:
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn.connected

    def _will(self) -> Will:
        return Will(self.topics.ndeath, self._ndeath(self.bdseq.for_connect()), 1, False)

    def _ndeath(self, bdseq: int | None = None) -> bytes:
        now = ms(self._wall())
        value = self.bdseq.current if bdseq is None else bdseq
        return encode(Payload((Metric(m.BDSEQ, None, DataType.INT64, value, now),), now))

    def _connected(self) -> None:
        self.bdseq.session_started()
        self._session = True
        self._unborn()
        if self.host is None:
            self._birth()
            return
        self.host.online = False  # until this session's STATE says otherwise
        log.info("sparkplug_waiting_for_host", host=self.host.host_id)

    def _unborn(self) -> None:
        self.born = False
        for device in self.devices.values():
            device.born = False

    def _lost(self) -> bool:
        """Whether the MQTT session is gone (then everything counts as unborn)."""
        if self._conn.connected:
            return False
        if self._session:
            self._session = False
            self._unborn()
        return True

    def _send(self, topic: str, metrics: tuple[Metric, ...], *, birth: bool = False) -> bool:
        """Publish one message of this session (seq 0 for an NBIRTH, the next one else)."""
        if self._lost():
            return False
        seq = self.seq.birth() if birth else self.seq.next()
        payload = encode(Payload(metrics, ms(self._wall()), seq))
        self._conn.publish(topic, payload, 0, False, queue=False)
        self.stats.sent += 1
        return True

    async def _keep_aliases(self) -> None:
        """Write new pins about once a second (their numbers are reserved already)."""
        while True:
            await asyncio.sleep(ALIAS_SAVE_S)
            self._save_aliases()

    def _save_aliases(self, final: bool = False) -> None:
        try:
            self.aliases.save(final)
        except OSError as exc:
            log.error("sparkplug_aliases_not_saved", path=str(self.aliases.path),
                      error=exc.strerror or str(exc))

    def _birth(self) -> None:
        """The birth sequence: NBIRTH with seq 0, then every ready device's DBIRTH."""
        now = ms(self._wall())
        values = self._node_values()
        metrics = tuple(
            Metric(d.name, self.aliases.alias(None, d.name) if d.aliased else None, d.datatype,
                   values[d.name], now) for d in m.node_metrics())
        self._unborn()
        if not self._send(self.topics.nbirth, metrics, birth=True):
            return
        self.born = True
        self._node_sent = dict(values)
        self.stats.births += 1
        log.info("sparkplug_birth", node=self.topics.node, bdseq=self.bdseq.current,
                 devices=sum(d.ready() for d in self.devices.values()))
        for device in self.devices.values():
            self._device_birth(device)

    def _node_values(self) -> dict[str, Value]:
        online = sum(d.online for d in self.devices.values())
        return m.node_values(self.bdseq.current or 0, len(self.devices), online)

    def _node_data(self) -> None:
        """NDATA with the node metrics that changed (meters configured, meters online)."""
        if not self.born:
            return
        now = ms(self._wall())
        changed = tuple(
            Metric(alias=self.aliases.alias(None, name), datatype=DataType.INT32, value=value,
                   timestamp=now)
            for name, value in self._node_values().items()
            if name in (m.METERS, m.METERS_ONLINE) and self._node_sent.get(name) != value)
        if changed and self._send(self.topics.ndata, changed):
            self._node_sent.update(self._node_values())

    def _device_birth(self, device: Device) -> None:
        """The device's DBIRTH (when the node is born and the device ready), then the
        history rows it holds."""
        if not self.born or not device.ready():
            return
        metrics = device.birth_metrics(self.aliases, self._slug_of)
        if self._send(self.topics.dbirth(device.id), metrics):
            device.born = True
            self._flush_rows(device)

    def _flush_rows(self, device: Device) -> None:
        pending = device.pending
        while pending and device.born:
            row = pending.popleft()
            metrics = device.history_metrics(row)
            if metrics and not self._send(self.topics.ddata(device.id), metrics):
                pending.appendleft(row)  # the session ended: the next birth sends it
                return

    def _host_offline(self) -> None:
        """The primary host went offline: NDEATH, and a new MQTT session (with the next
        bdSeq) that waits for the host's STATE before its births."""
        if self._lost():
            return
        # QoS 0: a QoS 1 message not yet acknowledged would be sent again in the next session
        self._say_goodbye(qos=0)
        self._unborn()
        self._conn.reconnect()

    def _say_goodbye(self, qos: int = 1) -> None:
        """The NDEATH of an intentional end of the session."""
        self._conn.publish(self.topics.ndeath, self._ndeath(), qos, False, queue=False)
