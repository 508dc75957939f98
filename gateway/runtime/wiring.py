"""Components the app adds besides its outputs: the meter alert watch (through the MQTT
output) and what the status page remembers (each meter's power trend, its last capture)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.alerts import AlertLane, AlertWatch
from gateway.commands import CommandRouter
from gateway.config import Config, MeterConfig, shard
from gateway.mqtt import MqttOutput
from gateway.observe import PowerTrend
from gateway.runtime.charts import LastCaptures
from gateway.runtime.component import Component
from gateway.runtime.fleet import Fleet


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
