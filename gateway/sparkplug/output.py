"""SparkplugOutput: the Sparkplug B Edge Node (:class:`~gateway.sparkplug.node.EdgeNode`) as a
hub sink and a service, and what Sparkplug hosts send to it.

Per poll it sends DDATA by exception, DDEATH when a meter goes offline, a DBIRTH when it
returns or its register set changes, NDATA when the node's own metrics change. Rows that the
history service backfilled arrive through :meth:`SparkplugOutput.publish_history` and go out
as historical DDATA, oldest first. ``Node Control/Rebirth`` (NCMD) sends the whole birth
sequence again; DCMD writes go to the command router through the injected ``submit``. A
clean stop publishes the NDEATH before DISCONNECT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from gateway.commands import CommandResponse
from gateway.config import Config, MeterConfig
from gateway.errors import SparkplugPayloadError
from gateway.history import HistoryRow
from gateway.model import Availability, Identity, Reading, RegisterInfo
from gateway.mqtt import InboundMessage, MqttConnection, slug
from gateway.sparkplug import metrics as m
from gateway.sparkplug.commands import REBIRTH, Throttle, Write, asks_rebirth, device_write
from gateway.sparkplug.device import Device, SlugOf, ms, signature
from gateway.sparkplug.host import parse_state
from gateway.sparkplug.node import EdgeNode, SparkplugStats
from gateway.sparkplug.payload import Payload, decode
from gateway.sparkplug.topics import state_topics

__all__ = ["SparkplugOutput", "SparkplugStats", "Submit", "default_slug"]

log = structlog.get_logger(__name__)

Submit = Callable[[str, str, dict[str, Any], str], Awaitable[CommandResponse]]


def default_slug(meter: str, name: str) -> str:
    """The slug of a register name as the MQTT topics have it (:func:`gateway.mqtt.topics.slug`)."""
    return slug(name)


class SparkplugOutput(EdgeNode):
    """The Edge Node as a hub sink with ``start``, ``serve`` and ``stop``."""

    name = "sparkplug"

    def __init__(self, config: Config, connection: MqttConnection, *,
                 slug_of: SlugOf = default_slug, submit: Submit | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        super().__init__(config, connection, slug_of, wall)
        self._submit = submit
        self._grace_s = max(0.5, config.gateway.shutdown_timeout_s / 3)
        self._throttle = Throttle()
        self._inbox: asyncio.Queue[tuple[str, str, Write]] = asyncio.Queue()

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
            self._say_goodbye()
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
        self._host_offline()
