"""How the app's parts are wired to each other: one function per component, taking what it
needs and returning the part with its :class:`Component` (lifecycle and reload steps).

The order in which :meth:`gateway.runtime.app.App.build` adds them matters: the pinned
identities come first (a name is pinned before any output uses it) and are stopped last; the
energy counters are a hub stage (every output gets their values with the readings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gateway.alerts import AlertLane, AlertWatch
from gateway.commands import (
    Command,
    CommandResponse,
    CommandRouter,
    CommandTally,
    Limits,
)
from gateway.config import Config, MeterConfig, shard
from gateway.energy import Energy, EnergyLane
from gateway.history import History, Lane
from gateway.mqtt import AuditPublisher, MqttOutput, RegisterIdentities, RequestBinding, slug
from gateway.observe import PowerTrend
from gateway.runtime.charts import LastCaptures
from gateway.runtime.component import Component
from gateway.runtime.fleet import Fleet
from gateway.sparkplug import SparkplugOutput
from gateway.sparkplug import create_output as create_sparkplug

Meters = Callable[[Sequence[MeterConfig]], Callable[[], None]]


def identities_component(config: Config) -> tuple[RegisterIdentities, Component]:
    """The pinned slugs and the register drift, built with MQTT off too."""
    identities = RegisterIdentities(config.gateway.state_dir, (m.id for m in config.meters))

    def meters(configs: Sequence[MeterConfig]) -> Callable[[], None]:
        return identities.prepare_meters([m.id for m in configs])

    return identities, Component("identities", identities, identities.start,
                                 identities.serve, identities.close, meters,
                                 flush=identities.flush)


def energy_component(config: Config, fleet: Fleet) -> tuple[Energy, Component]:
    """The import/export counters: a hub stage and a service that fills their gaps through
    each meter's lane."""

    def lane(meter: str) -> EnergyLane | None:
        parts = fleet.lane_of(meter)
        return None if parts is None else EnergyLane(*parts)

    energy = Energy(config.meters, lane, shard.instance_dir(config),
                    shared_dir=config.gateway.state_dir, max_rows=config.history.max_rows)
    return energy, Component("energy", energy, energy.start, energy.serve, energy.stop,
                             energy.prepare_meters, flush=energy.flush)


def commands_component(config: Callable[[], Config], fleet: Fleet, mqtt: MqttOutput | None,
                       is_online: Callable[[str], bool]
                       ) -> tuple[CommandRouter, CommandTally, Component]:
    """The command router, fed by MQTT request topics (with ``mqtt``) and by Modbus writes
    (``modbus.writes``); it shares the pollers' lanes. ``config`` gives the running
    configuration (a reload replaces it)."""
    cfg = config()
    tally = CommandTally()
    router = CommandRouter(
        fleet.clients, {m.id: m.commands for m in cfg.meters}, fleet.lanes,
        is_online=is_online, audit=tally, limits=Limits.of(cfg.commands))
    tally.known = lambda meter: meter in router.meters
    binding = None
    if mqtt is not None:
        router.add_audit(AuditPublisher(mqtt.connection, mqtt.topics))
        binding = RequestBinding(mqtt.connection, router, mqtt.topics,
                                 foreign=lambda: config().foreign_meters or (),
                                 owns=lambda meter: shard.owns(cfg, meter),
                                 inbox=cfg.commands.inbox,
                                 response_topics=cfg.mqtt.response_filters)
        binding.attach()

    def meters(configs: Sequence[MeterConfig]) -> Callable[[], None]:
        def switch() -> None:  # runs once the fleet holds the new clients and lanes
            router.set_meters({m.id: fleet.clients[m.id] for m in configs},
                              {m.id: m.commands for m in configs}, fleet.lanes)
            if binding is not None:
                binding.set_meters(m.id for m in configs)
        return switch

    async def drain() -> None:
        if binding is not None:
            await binding.drain()
        await router.drain()

    return router, tally, Component("commands", serve=binding.run if binding else None,
                                    meters=meters, drain=drain)


def history_component(config: Config, fleet: Fleet, mqtt: MqttOutput,
                      energy: Energy | None) -> tuple[History, Component]:
    """Gap-free history: a hub sink that backfills gaps through each meter's lane (its rows
    annotated with the energy counters' import and export)."""

    def lane(meter: str) -> Lane | None:
        parts = fleet.lane_of(meter)
        return None if parts is None else Lane(*parts)

    history = History(config.history, (m.id for m in config.meters), mqtt, lane,
                      shard.instance_dir(config),
                      annotate=energy.annotate if energy is not None else None)

    def meters(configs: Sequence[MeterConfig]) -> Callable[[], None]:
        return lambda: history.set_meters(m.id for m in configs)

    return history, Component("history", history, history.start, history.serve,
                              history.stop, meters, flush=history.save)


def sparkplug_component(config: Config, router: CommandRouter,
                        identities: RegisterIdentities | None, mqtt: MqttOutput | None,
                        history: History | None) -> tuple[SparkplugOutput, Component]:
    """Sparkplug B: the gateway as one Edge Node on its own MQTT connection; DCMD writes go
    through the command router, backfilled history rows also go out as historical DDATA
    (they come from the MQTT output, whose acknowledgements track the gaps)."""

    async def submit(meter: str, action: str, fields: dict[str, Any], client: str
                     ) -> CommandResponse:
        own = {k: v for k, v in fields.items() if k not in ("dry_run", "transaction")}
        return await router.submit(Command.of(
            meter, action, own, source="sparkplug", client=client,
            transaction=fields.get("transaction"), dry_run=fields.get("dry_run") is True))

    def slug_of(meter: str, name: str) -> str:
        """The register's pinned MQTT slug (a metric name is then pinned by Sparkplug's own
        alias book the first time it is handed out)."""
        pin = identities.meter(meter).get(name) if identities is not None else None
        return pin.slug if pin is not None else slug(name)

    spb = create_sparkplug(config, submit=submit, slug_of=slug_of)
    if mqtt is not None and history is not None:
        mqtt.on_history_published(spb.publish_history)
    return spb, Component("sparkplug", spb, spb.start, spb.serve, spb.stop,
                          spb.prepare_meters)


def alert_component(config: Config, fleet: Fleet, mqtt: MqttOutput) -> tuple[AlertWatch,
                                                                              Component]:
    """The alert watch of ``config``'s meters: it reads through each meter's lane and
    publishes through ``mqtt``; its last ids live in the instance's state directory."""

    def lane(meter: str) -> AlertLane | None:
        client, lock = fleet.clients.get(meter), fleet.lanes.get(meter)
        return None if client is None or lock is None else AlertLane(client, lock)

    watch = AlertWatch(config.meters, mqtt, lane, shard.instance_dir(config))

    def meters(configs: Sequence[MeterConfig]) -> Callable[[], None]:
        return lambda: watch.set_meters(configs)

    return watch, Component("alerts", watch, watch.start, watch.serve, watch.stop, meters,
                            flush=watch.save)


def status_component(router: CommandRouter) -> tuple[PowerTrend, LastCaptures, Component]:
    """What the status page charts: a hub sink of each meter's recent power and the last
    capture answered by ``router``; a reload forgets the meters removed."""
    trend, captures = PowerTrend(), LastCaptures()
    router.on_outcome(captures)

    def meters(configs: Sequence[MeterConfig]) -> Callable[[], None]:
        def switch() -> None:
            trend.forget(m.id for m in configs)
            captures.forget(m.id for m in configs)
        return switch

    return trend, captures, Component("status", trend, meters=meters)
