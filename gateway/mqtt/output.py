"""MqttOutput: the hub sink that publishes everything of DESIGN.md §4 to the broker.

Per poll it publishes one state JSON per meter (every poll) and, when enabled, each
register's rate as a plain number on its own topic, and below it the energy of power
registers (``/energy``) and the energy counters (``/import``, ``/export``). Those topics are
published when the value changed -- by at least ``mqtt.deadband`` for the rate's type code --
and ``mqtt.min_interval_s`` passed since the last message, or when ``max_silence_s`` passed
(the heartbeat). Every number is rounded to the digits its type's quantum supports. Each
meter's ``diagnostics`` (online, data age, failed polls, poll latency, from the poller's
counters) go out every ``max(1 s, min_interval_s)``, with a reading of the meter once that
interval has passed (so each meter at the moment of its own poll, not the whole fleet in one
turn of the loop; a meter that is not polled meanwhile by a check every second), and at
every availability change.
Availability, device info, discovery and ``bridge/*`` are retained QoS 1. On every
(re)connect it re-announces all of it; when Home Assistant announces itself
(``homeassistant/status`` = ``online``) discovery is sent again. Retained topics of meters
no longer configured are cleared with empty payloads. For gap-free history
(:mod:`gateway.history.service`) it reports every state message the broker acknowledged
and publishes backfilled rows on ``<base>/<meter>/history`` with acknowledgement. Slugs
come from the pinned slugs of :class:`~gateway.mqtt.identities.RegisterIdentities` (the
app's, shared with its other parts; or an own one, written at ``flush``/``stop``).
In a worker process (``gateway.workers``) the session's own ``state`` and ``info`` (and its
will) are ``bridge/<instance>-w<j>/...``: the instance's ``bridge/state``, ``bridge/info`` and
Home Assistant bridge device belong to the supervisor (:mod:`gateway.mqtt.bridge`), and the
meters' discovery points at them as in a single process.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from gateway import __version__
from gateway.config import Config, MeterConfig, shard
from gateway.core import PollStats
from gateway.history import HistoryRow
from gateway.model import Availability, Identity, Reading, RegisterInfo
from gateway.mqtt.connection import ConnectionStats, MqttConnection, Will
from gateway.mqtt.discovery import bridge_config
from gateway.mqtt.identities import RegisterIdentities
from gateway.mqtt.ledger import FILE_NAME, RetainedLedger
from gateway.mqtt.message import InboundMessage
from gateway.mqtt.plan import MeterPlan, discover
from gateway.mqtt.topics import Topics
from gateway.mqtt.values import RegisterValues

log = structlog.get_logger(__name__)

ONLINE, OFFLINE = b"online", b"offline"
StatsOf = Callable[[str], PollStats | None]


class MqttOutput:
    """Publishes hub updates to MQTT; also a service (``start``/``serve``/``stop``)."""

    name = "mqtt"

    def __init__(
        self,
        config: Config,
        connection: MqttConnection,
        ledger: RetainedLedger,
        *,
        outputs: Callable[[], Sequence[str]] = lambda: ("mqtt",),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        identities: RegisterIdentities | None = None,
        poll_stats: StatsOf | None = None,
    ) -> None:
        """``poll_stats``: each meter's poller counters, for its diagnostics."""
        self._cfg = config.mqtt
        self._poll_stats = poll_stats or (lambda _meter: None)
        self._status_url = config.http.status_url if config.http.enabled else None
        self._gateway_id = shard.instance_name(config)
        self._process = shard.process_name(config)
        self._worker = config.worker is not None
        self._shutdown_s = config.gateway.shutdown_timeout_s
        self._conn = connection
        self._values = RegisterValues(config.mqtt, connection, clock)
        self._ledger = ledger
        self._outputs = outputs
        self._clock = clock
        self._wall = wall
        self._diagnostics_s = max(1.0, config.mqtt.min_interval_s)
        self._begun = clock()  # a meter never polled gets its first diagnostics from here on
        self.topics = topics_of(config)
        self._session = session_topics(config)  # this process's bridge state and info
        self._meters = {m.id: m for m in config.meters}
        self._foreign = frozenset(config.foreign_meters or ())  # other instances poll these
        self._owns_identities = identities is None
        self.identities = identities or RegisterIdentities(config.gateway.state_dir,
                                                           self._meters)
        self._plans = {m.id: self._plan(m) for m in config.meters}
        self._to_clear: list[str] = []
        self._started = wall()
        self._state_listeners: list[Callable[[str, float], None]] = []
        self._history_listeners: list[Callable[[str, Sequence[HistoryRow]], None]] = []

    @property
    def connection(self) -> MqttConnection:
        """The broker connection (for further subscribers, e.g. command requests)."""
        return self._conn

    @property
    def connected(self) -> bool:
        return self._conn.connected

    @property
    def connects(self) -> int:
        return self._conn.stats.connects

    @property
    def stats(self) -> ConnectionStats:
        """The broker connection's counters."""
        return self._conn.stats

    def flush(self) -> None:
        """Write the retained-topic ledger (and the slug pins, when they are its own) now
        (at stop, on a crash)."""
        self._ledger.flush()
        if self._owns_identities:
            self.identities.flush()

    def on_state_confirmed(self, listener: Callable[[str, float], None]) -> None:
        """Call ``listener(meter, ts)`` whenever the broker acknowledged a state message."""
        self._state_listeners.append(listener)

    def on_history_published(self, listener: Callable[[str, Sequence[HistoryRow]], None]
                             ) -> None:
        """Call ``listener(meter, rows)`` with the history rows the broker acknowledged (for
        other outputs that publish history, e.g. Sparkplug's historical DDATA)."""
        self._history_listeners.append(listener)

    def publish_history(self, meter: str, rows: Sequence[HistoryRow]) -> asyncio.Future[None]:
        """Publish backfilled rows on ``<base>/<meter>/history`` (QoS 1, not retained); the
        future resolves once the broker acknowledged them (at once for an unknown meter)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        plan = self._plans.get(meter)
        if plan is None or not rows:
            done.set_result(None)
            return done

        def acknowledged() -> None:
            if not done.done():  # else the backfill gave up on it and publishes it again
                done.set_result(None)
                for listener in self._history_listeners:
                    listener(meter, rows)

        self._conn.publish(self.topics.history(meter), plan.history_json(rows), 1, False,
                           on_ack=acknowledged)
        return done

    def publish_alert(self, meter: str, event: Mapping[str, Any]) -> asyncio.Future[None]:
        """Publish one meter alert on ``<base>/<meter>/alert`` (JSON, QoS 1, not retained);
        the future resolves once the broker acknowledged it (at once for an unknown meter)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if meter not in self._plans:
            done.set_result(None)
            return done

        def acknowledged() -> None:
            if not done.done():
                done.set_result(None)

        payload = json.dumps(dict(event), separators=(",", ":"), ensure_ascii=False,
                             allow_nan=False).encode("utf-8")
        self._conn.publish(self.topics.alert(meter), payload, 1, False, on_ack=acknowledged)
        return done

    # -- service --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._ledger.load()
        for meter in self._foreign.intersection(self._ledger.meters()):
            self._ledger.forget(meter)  # it moved to another instance, which publishes it
        self._to_clear = [m for m in self._ledger.meters() if m not in self._plans]
        for meter, plan in self._plans.items():
            plan.net.update(self._ledger.net(meter))
        self._conn.on_connected(self._announce)
        if self._cfg.homeassistant.enabled:
            self._conn.subscribe(self.topics.discovery_status, self._ha_status)

    async def serve(self) -> None:
        """The connection, and each meter's diagnostics every so often."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._conn.run(), name="mqtt:connection")
            group.create_task(self._diagnostics_loop(), name="mqtt:diagnostics")

    async def _diagnostics_loop(self) -> None:
        """The diagnostics of the meters no reading brought them for: not polled (offline,
        or polled less often than the interval)."""
        late = self._diagnostics_s + 1.0  # a meter polled at least that often: its reading's
        while True:
            await asyncio.sleep(1.0)
            now = self._clock()
            for plan in tuple(self._plans.values()):
                if now - max(plan.diagnostics_at, self._begun) >= late:
                    self._publish_diagnostics(plan)

    def _publish_diagnostics(self, plan: MeterPlan) -> None:
        stats = self._poll_stats(plan.meter.id)
        reading = plan.reading
        plan.diagnostics = plan.diagnostics_json(reading, self._wall(), stats)
        plan.diagnostics_at = self._clock()
        self._conn.publish(plan.diagnostics_topic, plan.diagnostics, self._cfg.qos,
                           self._cfg.retain, droppable=True)

    async def stop(self) -> None:
        """Say goodbye: ``bridge/state`` offline, flush, disconnect cleanly."""
        self._conn.publish(self._session.bridge_state, OFFLINE, 1, True)
        self.flush()
        if self._owns_identities:
            await self.identities.close()
        await self._conn.close(grace_s=max(0.5, self._shutdown_s / 3))

    def prepare_meters(self, meters: Sequence[MeterConfig]) -> Callable[[], None]:
        """The step that switches to a new meter set (a configuration reload), keeping the
        session: removed meters' retained topics are cleared, new meters start ``offline``
        (until their first good poll), changed meters get a fresh plan (their discovery is
        rebuilt once identity and registers are read again); ``bridge/info`` is updated."""
        new = {m.id: m for m in meters}

        def switch() -> None:
            for meter in [m for m in self._plans if m not in new]:
                plan = self._plans.pop(meter)
                topics = plan.retained_topics(True, True) | self._ledger.topics(meter)
                for topic in sorted(topics):
                    self._conn.publish(topic, b"", 1, True)
                self._ledger.forget(meter)
                log.info("meter_topics_cleared", meter=meter)
            for meter, cfg in new.items():
                old = self._plans.get(meter)
                if old is not None and old.meter == cfg:
                    continue
                plan = self._plans[meter] = self._plan(cfg)
                plan.net.update(self._ledger.net(meter))
                if old is None:
                    self._conn.publish(plan.availability_topic, OFFLINE, 1, True)
                else:
                    plan.online = old.online
            self._meters = new
            self._conn.publish(self._session.bridge_info, self._info_json(), 1, True)

        return switch

    def _plan(self, meter: MeterConfig) -> MeterPlan:
        return MeterPlan(meter, self.topics, functools.partial(self.identities.slugs, meter.id),
                         functools.partial(self.identities.entity_slug, meter.id))

    # -- sink -----------------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        plan = self._plans.get(meter)
        if plan is None:
            return
        plan.identity = identity
        self._conn.publish(plan.device_topic, self._device_json(plan.meter, identity), 1, True)
        self._refresh_discovery(plan)

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        plan = self._plans.get(meter)
        if plan is None:
            return
        plan.set_registers(registers)
        self._refresh_discovery(plan)

    def on_reading(self, reading: Reading) -> None:
        plan = self._plans.get(reading.meter)
        if plan is None:
            return
        if not plan.covers(reading):
            plan.adopt_reading_names(reading)
            self._refresh_discovery(plan)
        cfg = self._cfg
        plan.reading = reading
        plan.state = plan.state_json(reading, self._wall())
        confirm = functools.partial(self._state_confirmed, reading.meter, reading.ts) \
            if self._state_listeners else None
        self._conn.publish(plan.state_topic, plan.state, cfg.qos, cfg.retain, droppable=True,
                           on_ack=confirm)
        if cfg.per_register_topics:
            self._values.publish(plan, reading)
        if self._clock() - plan.diagnostics_at >= self._diagnostics_s:
            self._publish_diagnostics(plan)  # due: with this reading, at this meter's moment
        turned = plan.newly_net(reading)
        if turned:
            log.info("register_runs_backwards", meter=reading.meter, registers=turned)
            self._refresh_discovery(plan)

    def on_availability(self, availability: Availability) -> None:
        plan = self._plans.get(availability.meter)
        if plan is None:
            return
        if plan.online != availability.online:
            plan.last_rate.clear()  # republish every value once the meter is back
        changed = plan.online != availability.online
        plan.online = availability.online
        payload = ONLINE if availability.online else OFFLINE
        self._conn.publish(plan.availability_topic, payload, 1, True)
        if changed:
            self._publish_diagnostics(plan)

    # -- internals ------------------------------------------------------------------------------

    def _state_confirmed(self, meter: str, ts: float) -> None:
        for listener in self._state_listeners:
            listener(meter, ts)

    def _refresh_discovery(self, plan: MeterPlan) -> None:
        """Rebuild this meter's discovery, clear what disappeared, publish, record.

        Nothing is cleared before both the identity and the register set are known, so a
        restart never deletes (and re-creates) Home Assistant entities."""
        if plan.identity is None or not plan.registers:
            return
        old = plan.retained_topics(self._cfg.retain, self._cfg.per_register_topics)
        old |= self._ledger.topics(plan.meter.id)
        discover(plan, self._cfg, self._gateway_id)
        current = plan.retained_topics(self._cfg.retain, self._cfg.per_register_topics)
        for topic in sorted(old - current):
            self._conn.publish(topic, b"", 1, True)
        self._publish_discovery(plan)
        self._ledger.record(plan.meter.id, current, plan.net)

    def _publish_discovery(self, plan: MeterPlan) -> None:
        """Publish the plan's discovery payloads, then keep only their topics: the payloads
        (14 kB a meter, 14 MB at 1000 meters) are built again when they are announced again,
        from the same plan."""
        for topic, payload in plan.discovery.items():
            self._conn.publish(topic, payload, 1, True)
        plan.discovery = dict.fromkeys(plan.discovery, b"")

    def _announce(self) -> None:
        """On every (re)connect: bridge, then each meter's availability, device, discovery
        and latest state; first of all, clear the topics of meters no longer configured."""
        for meter in self._to_clear:
            for topic in sorted(self._ledger.topics(meter)):
                self._conn.publish(topic, b"", 1, True)
            self._ledger.forget(meter)
            log.info("meter_topics_cleared", meter=meter)
        self._to_clear = []
        conn, cfg = self._conn, self._cfg
        conn.publish(self._session.bridge_state, ONLINE, 1, True)
        conn.publish(self._session.bridge_info, self._info_json(), 1, True)
        self._announce_discovery()
        for plan in self._plans.values():
            conn.publish(plan.availability_topic, ONLINE if plan.online else OFFLINE, 1, True)
            if plan.identity is not None:
                conn.publish(plan.device_topic, self._device_json(plan.meter, plan.identity),
                             1, True)
            if plan.state is not None:
                conn.publish(plan.state_topic, plan.state, cfg.qos, cfg.retain, droppable=True)
            if plan.diagnostics is not None:
                conn.publish(plan.diagnostics_topic, plan.diagnostics, cfg.qos, cfg.retain,
                             droppable=True)
            self._values.republish(plan)

    def _announce_discovery(self) -> None:
        if not self._cfg.homeassistant.enabled:
            return
        if not self._worker:  # a worker's supervisor announces the bridge device
            self._conn.publish(*bridge_config(self.topics, self._gateway_id, self._status_url),
                               1, True)
        for plan in self._plans.values():
            if plan.identity is not None and plan.registers:
                discover(plan, self._cfg, self._gateway_id)
                self._publish_discovery(plan)

    def _ha_status(self, message: InboundMessage) -> None:
        if message.payload.strip().lower() == ONLINE:
            log.info("homeassistant_online", topic=message.topic)
            self._announce_discovery()

    def _device_json(self, meter: MeterConfig, identity: Identity) -> bytes:
        return json.dumps(
            {"meter": meter.id, "serial": identity.serial, "model": identity.model,
             "firmware": identity.firmware, "hostname": identity.hostname, "url": meter.url},
            separators=(",", ":"), ensure_ascii=False,
        ).encode("utf-8")

    def _info_json(self) -> bytes:
        return json.dumps(
            {"id": self._process, "version": __version__, "meters": list(self._meters),
             "outputs": list(self._outputs()), "started": round(self._started, 3)},
            separators=(",", ":"),
        ).encode("utf-8")


def topics_of(config: Config) -> Topics:
    """The topic table of ``config`` (its own bridge topics when it is one shard instance)."""
    cfg = config.mqtt
    return Topics(cfg.base_topic, cfg.homeassistant.prefix, shard.bridge_level(config))


def session_topics(config: Config) -> Topics:
    """The topic table whose ``bridge_state`` and ``bridge_info`` are this process's own (the
    instance's, but a worker's own in a worker process)."""
    cfg = config.mqtt
    return Topics(cfg.base_topic, cfg.homeassistant.prefix, shard.session_bridge_level(config))


def create_output(
    config: Config, *, outputs: Callable[[], Sequence[str]] = lambda: ("mqtt",),
    identities: RegisterIdentities | None = None, poll_stats: StatsOf | None = None,
) -> MqttOutput:
    """The MQTT output of ``config``: its connection (with the ``bridge/state`` will), its
    ledger in ``gateway.state_dir`` and the slug pins of ``identities``."""
    cfg = config.mqtt
    connection = MqttConnection(
        cfg,
        client_id=shard.suffixed(config, cfg.client_id or f"egauge-gateway-{config.gateway.id}"),
        will=Will(session_topics(config).bridge_state, OFFLINE, 1, True),
    )
    ledger = RetainedLedger(shard.instance_dir(config) / FILE_NAME)
    return MqttOutput(config, connection, ledger, outputs=outputs, identities=identities,
                      poll_stats=poll_stats)
