"""SparkplugOutput: the gateway as one Sparkplug B Edge Node, each meter one of its Devices.

It is a hub sink and a service on its own MQTT connection, whose will is the NDEATH with the
``bdSeq`` of that connection (:mod:`gateway.sparkplug.session`). On every MQTT session, once
the primary host (when one is configured) is online, it sends the birth sequence: NBIRTH
(``seq`` 0) and the DBIRTH of every meter that is ready; then DDATA by exception per poll,
DDEATH when a meter goes offline, a DBIRTH when it returns or its register set changes, NDATA
when the node's own metrics change. ``Node Control/Rebirth`` (NCMD) sends the whole birth
sequence again, with the same ``bdSeq``; DCMD writes go to the command router through the
injected ``submit``. Rows that the history service backfilled arrive through
:meth:`SparkplugOutput.publish_history` and go out as historical DDATA, oldest first. Every
message is QoS 0, not retained, and sent only within the session it belongs to (never queued
into the next one); the NDEATH is QoS 1. A clean stop publishes the NDEATH before DISCONNECT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from gateway import shard
from gateway.commands import CommandResponse
from gateway.config import Config, MeterConfig
from gateway.errors import SparkplugPayloadError
from gateway.model import Availability, Identity, Reading, RegisterInfo
from gateway.mqtt.connection import MqttConnection, Will
from gateway.mqtt.message import InboundMessage
from gateway.mqtt.topics import slug
from gateway.rows import HistoryRow
from gateway.sparkplug import metrics as m
from gateway.sparkplug.aliases import FILE_NAME, AliasBook
from gateway.sparkplug.commands import REBIRTH, Throttle, Write, asks_rebirth, device_write
from gateway.sparkplug.device import Device, SlugOf, ms, signature
from gateway.sparkplug.host import PrimaryHost, parse_state
from gateway.sparkplug.payload import DataType, Metric, Payload, Value, decode, encode
from gateway.sparkplug.session import BdSeq, Seq
from gateway.sparkplug.topics import SparkplugTopics, state_topics

log = structlog.get_logger(__name__)

Submit = Callable[[str, str, dict[str, Any], str], Awaitable[CommandResponse]]
ALIAS_SAVE_S = 1.0


def default_slug(meter: str, name: str) -> str:
    """The slug of a register name as the MQTT topics have it (:func:`gateway.mqtt.topics.slug`)."""
    return slug(name)


@dataclass(slots=True)
class SparkplugStats:
    """Counters for status pages and metrics."""

    births: int = 0  # NBIRTHs (including rebirths)
    rebirths: int = 0  # of them asked for by NCMD
    sent: int = 0
    malformed: int = 0  # NCMD, DCMD or STATE payloads that could not be read
    ignored: int = 0  # commands with nothing to do (unknown metric or device, retained, ...)
    commands: int = 0  # DCMD writes answered by the command router


class SparkplugOutput:
    """The Edge Node (a hub sink with ``start``, ``serve`` and ``stop``)."""

    name = "sparkplug"

    def __init__(self, config: Config, connection: MqttConnection, *,
                 slug_of: SlugOf = default_slug, submit: Submit | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        cfg = self.cfg = config.sparkplug
        node = shard.suffixed(config, cfg.edge_node_id or config.gateway.id)
        self.topics = SparkplugTopics(cfg.group_id, node)
        self._conn = connection
        self._slug_of = slug_of
        self._submit = submit
        self._wall = wall
        self._grace_s = max(0.5, config.gateway.shutdown_timeout_s / 3)
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
        self._throttle = Throttle()
        self._inbox: asyncio.Queue[tuple[str, str, Write]] = asyncio.Queue()
        connection.will_from(self._will)

    @property
    def connection(self) -> MqttConnection:
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn.connected

    # -- service ------------------------------------------------------------------------

    async def start(self) -> None:
        """Read bdSeq and the pinned aliases (a damaged alias file is a ConfigError) and
        subscribe to the node's commands and the primary host's STATE."""
        self.bdseq.load()
        self.aliases.load()
        conn = self._conn
        conn.on_connected(self._connected)
        conn.subscribe(self.topics.ncmd, self.receive_ncmd)
        conn.subscribe(self.topics.dcmd_filter, self.receive_dcmd)
        if self.host is not None:
            for topic in state_topics(self.host.host_id):
                conn.subscribe(topic, self.receive_state)

    async def serve(self) -> None:
        """The connection, and one task per DCMD write until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._conn.run(), name="sparkplug:mqtt")
            group.create_task(self._keep_aliases(), name="sparkplug:aliases")
            count = 0
            while True:
                meter, client, write = await self._inbox.get()
                count += 1
                group.create_task(self._command(meter, client, write),
                                  name=f"sparkplug:dcmd-{meter}-{count}")

    async def stop(self) -> None:
        """The intentional goodbye: NDEATH within a session, then DISCONNECT."""
        if self._session and self._conn.connected:
            self._conn.publish(self.topics.ndeath, self._ndeath(), 1, False, queue=False)
        self._session = False
        self._unborn()
        self._save_aliases(final=True)
        await self._conn.close(grace_s=self._grace_s)

    def prepare_meters(self, meters: Sequence[MeterConfig]) -> Callable[[], None]:
        """The step that switches to a new meter set (a configuration reload): removed
        meters' devices die (DDEATH), new ones are born when ready, changed ones are born
        again (their writable metrics may differ)."""
        new = {meter.id: meter for meter in meters}

        def switch() -> None:
            for meter in [d for d in self.devices if d not in new]:
                if self.devices.pop(meter).born:
                    self._send(self.topics.ddeath(meter), ())
            for meter, cfg in new.items():
                device = self.devices.get(meter)
                if device is None:
                    self.devices[meter] = Device(cfg)
                elif device.meter != cfg:
                    device.meter, device.born = cfg, False
                    self._device_birth(device)
            self._node_data()

        return switch

    # -- the session ----------------------------------------------------------------------

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

    # -- sink -----------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        device = self.devices.get(meter)
        if device is not None:  # a changed identity goes out with the next reading's DDATA
            device.identity = identity

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        """Nothing: a DBIRTH declares the registers of a reading (see :meth:`on_reading`)."""

    def on_reading(self, reading: Reading) -> None:
        device = self.devices.get(reading.meter)
        if device is None:
            return
        device.reading = reading
        if not self.born or not device.online:
            return
        if not device.born or signature(reading.registers) != device.signature:
            self._device_birth(device)
            return
        changed = device.data_metrics(reading)
        if changed:
            self._send(self.topics.ddata(device.id), changed)

    def on_availability(self, availability: Availability) -> None:
        device = self.devices.get(availability.meter)
        if device is None:
            return
        device.online = availability.online
        if not availability.online and device.born:
            gone = device.changed({m.ONLINE: False}, ms(availability.since))
            if gone:
                self._send(self.topics.ddata(device.id), gone)
            self._send(self.topics.ddeath(device.id), ())
            device.born = False
        elif availability.online and not device.born:
            self._device_birth(device)
        self._node_data()

    def publish_history(self, meter: str, rows: Sequence[HistoryRow]) -> None:
        """Send backfilled rows as historical DDATA, oldest first (held while the device is
        not born; sent after its next DBIRTH)."""
        device = self.devices.get(meter)
        if device is None or not self.cfg.history or not rows:
            return
        device.keep_rows(sorted(rows, key=lambda row: row.ts))
        if device.born:
            self._flush_rows(device)

    def _flush_rows(self, device: Device) -> None:
        pending = device.pending
        while pending and device.born:
            row = pending.popleft()
            metrics = device.history_metrics(row)
            if metrics and not self._send(self.topics.ddata(device.id), metrics):
                pending.appendleft(row)  # the session ended: the next birth sends it
                return

    # -- what hosts send --------------------------------------------------------------------

    def _decode(self, verb: str, message: InboundMessage) -> Payload | None:
        try:
            return decode(message.payload)
        except SparkplugPayloadError as exc:
            self.stats.malformed += 1
            held = self._throttle.allow(f"malformed {verb}")
            if held is not None:
                log.warning("sparkplug_command_malformed", verb=verb, topic=message.topic,
                            size=len(message.payload), error=str(exc), held_back=held)
            return None

    def _ignored(self, verb: str, topic: str, reason: str, metric: object = None) -> None:
        self.stats.ignored += 1
        held = self._throttle.allow(f"ignored {verb} {reason}")
        if held is not None:
            log.info("sparkplug_command_ignored", verb=verb, topic=topic, reason=reason,
                     metric=metric, held_back=held)

    def receive_ncmd(self, message: InboundMessage) -> None:
        """The handler of ``NCMD``: ``Node Control/Rebirth`` = true rebirths the node;
        anything else is counted and logged (throttled), and changes nothing."""
        if message.retain:
            self._ignored("NCMD", message.topic, "retained")
            return
        payload = self._decode("NCMD", message)
        if payload is None:
            return
        names = self.aliases.names(None)
        for metric in payload.metrics:
            name = metric.name if metric.name is not None else names.get(metric.alias or 0)
            if name is not None and asks_rebirth(name, metric):
                self._rebirth()
                return
            self._ignored("NCMD", message.topic, "not a node command", name or metric.alias)

    def _rebirth(self) -> None:
        if not self._session or (self.host is not None and not self.host.online):
            self._ignored("NCMD", self.topics.ncmd, "no session to rebirth")
            return
        self.stats.rebirths += 1
        log.info("sparkplug_rebirth", node=self.topics.node, bdseq=self.bdseq.current)
        self._birth()

    def receive_dcmd(self, message: InboundMessage) -> None:
        """The handler of ``DCMD`` to any of the node's devices (see
        :mod:`gateway.sparkplug.commands`); what cannot be read or done is counted and logged
        (throttled), and changes nothing."""
        meter = self.topics.device_of(message.topic)
        device = self.devices.get(meter) if meter is not None else None
        if device is None:
            self._ignored("DCMD", message.topic, "unknown device")
            return
        if message.retain:
            self._ignored("DCMD", message.topic, "retained")
            return
        payload = self._decode("DCMD", message)
        if payload is None:
            return
        names = self.aliases.names(device.id)
        for metric in payload.metrics:
            name = metric.name if metric.name is not None else names.get(metric.alias or 0)
            write = device_write(name, metric) if name is not None else None
            if write == REBIRTH:
                device.born = False
                self._device_birth(device)
            elif isinstance(write, Write) and self._submit is not None:
                self._inbox.put_nowait((device.id, f"{message.topic}#{name}", write))
            else:
                reason = "no command router" if isinstance(write, Write) else "not writable"
                self._ignored("DCMD", message.topic, reason, name or metric.alias)

    async def _command(self, meter: str, client: str, write: Write) -> None:
        """One DCMD write through the router; a switched relay reports its new state."""
        assert self._submit is not None
        try:
            response = await self._submit(meter, write.action, write.fields, client)
        except Exception as exc:
            log.error("sparkplug_command_failed", meter=meter, action=write.action,
                      error=repr(exc), exc_info=exc)
            return
        self.stats.commands += 1
        device = self.devices.get(meter)
        if (device is None or not response.ok or write.relay is None or write.closed is None
                or write.fields.get("dry_run") is True):
            return
        device.relays[write.relay] = write.closed
        if device.born:
            changed = device.changed({m.relay_metric(write.relay): write.closed},
                                     ms(self._wall()))
            if changed:
                self._send(self.topics.ddata(meter), changed)

    def receive_state(self, message: InboundMessage) -> None:
        """The handler of the primary host's STATE (see :mod:`gateway.sparkplug.host`)."""
        assert self.host is not None
        if not message.payload:
            return  # a retained STATE was cleared
        state = parse_state(message.payload)
        if state is None:
            self.stats.malformed += 1
            held = self._throttle.allow("malformed STATE")
            if held is not None:
                log.warning("sparkplug_state_malformed", topic=message.topic,
                            size=len(message.payload), held_back=held)
            return
        if not self.host.update(state):
            return
        if state.online:
            log.info("sparkplug_host_online", host=self.host.host_id)
            if self._session and not self.born:
                self._birth()
            return
        log.warning("sparkplug_host_offline", host=self.host.host_id)
        if self.born and not self._lost():
            self._conn.publish(self.topics.ndeath, self._ndeath(), 1, False, queue=False)
        self._unborn()
