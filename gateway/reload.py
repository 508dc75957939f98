"""What a configuration reload (SIGHUP) changes: a plan computed from the running and the new
configuration, before anything is touched.

Meters are the unit of a reload: added meters start polling, removed meters stop (shown
offline, logged out, their outputs go away), changed meters restart with their new settings,
the rest keep running undisturbed. The other sections (``gateway``, ``mqtt``, ``modbus``,
``http``) configure sessions and listening sockets that a reload must not drop: their changes
wait for a restart and are reported as ``restart_needed``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

import structlog

from gateway import shard
from gateway.app import App, MeterClientLike, close_clients
from gateway.config import Config, MeterConfig, load_config
from gateway.errors import ConfigError
from gateway.model import Availability

log = structlog.get_logger(__name__)

SECTIONS: Final = ("gateway", "mqtt", "modbus", "http", "history", "sparkplug")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    config: Config  # what runs after the reload: the new meters, the running other sections
    added: tuple[MeterConfig, ...]
    removed: tuple[str, ...]
    changed: tuple[MeterConfig, ...]
    restart_needed: tuple[str, ...]  # sections whose changes wait for a restart

    @property
    def restarted(self) -> tuple[str, ...]:
        """The meters whose poller (and client) is replaced: removed and changed ones."""
        return (*self.removed, *(m.id for m in self.changed))

    @property
    def started(self) -> tuple[MeterConfig, ...]:
        """The meters that get a new poller: added and changed ones."""
        return (*self.changed, *self.added)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.restart_needed)


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Compare ``new`` with the ``running`` configuration."""
    old = {m.id: m for m in running.meters}
    ids = {m.id for m in new.meters}
    return ReloadPlan(
        config=replace(running, meters=new.meters, source=new.source or running.source),
        added=tuple(m for m in new.meters if m.id not in old),
        removed=tuple(m for m in old if m not in ids),
        changed=tuple(m for m in new.meters if m.id in old and old[m.id] != m),
        restart_needed=tuple(s for s in SECTIONS if getattr(running, s) != getattr(new, s)),
    )


Switch = Callable[[], None]


class Reloader:
    """Applies a reload to a running :class:`App`: first everything that can fail (reading
    and checking the file, the new meters' clients, each component's check of the new meter
    set), then -- only when all of that worked -- the switch, which cannot fail."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def serve(self, wanted: asyncio.Event) -> None:
        """Reload whenever ``wanted`` is set (SIGHUP), one reload at a time."""
        while True:
            await wanted.wait()
            wanted.clear()
            await self.reload()

    async def reload(self) -> bool:
        """True when the new configuration runs; False when it was refused (logged as
        ``config_reload_refused`` with every problem, nothing changed)."""
        app = self.app
        app.notifier.reloading()
        try:
            prepared = await self._prepare()
            if prepared is None:
                return False
            await self._apply(*prepared)
            return True
        finally:
            app.notifier.ready(app.status_line())

    async def _prepare(self) -> tuple[ReloadPlan, dict[str, MeterClientLike],
                                      list[Switch]] | None:
        app = self.app
        source = app.config.source
        clients: dict[str, MeterClientLike] = {}
        try:
            new, split_changed = shard.reloaded(app.config, load_config(source))
            plan = plan_reload(app.config, new)
            if split_changed:
                plan = replace(plan, restart_needed=(*plan.restart_needed, "shard"))
            clients = {m.id: app.client_factory(m) for m in plan.started}
            meters = plan.config.meters
            return plan, clients, [c.meters(meters) for c in app.components if c.meters]
        except ConfigError as exc:
            log.error("config_reload_refused", source=source, problems=list(exc.problems))
        except Exception as exc:  # a reload must never take the running gateway down
            log.error("config_reload_refused", source=source, problems=[repr(exc)],
                      exc_info=exc)
        await close_clients(clients)
        return None

    async def _apply(self, plan: ReloadPlan, clients: dict[str, MeterClientLike],
                     switches: list[Switch]) -> None:
        app = self.app
        await app.stop_pollers(plan.restarted)
        now = time.time()
        for meter in plan.removed:
            app.hub.publish_availability(Availability(meter, False, now, "removed"))
        old = {m: app.clients.pop(m) for m in plan.restarted if m in app.clients}
        for meter in plan.restarted:
            app.pollers.pop(meter, None)
        for meter in plan.removed:
            app.lanes.pop(meter, None)
        await close_clients(old)
        app.config = plan.config
        app.hub.set_meters(m.id for m in plan.config.meters)
        for m in plan.started:
            app.add_poller(m, clients[m.id])
        for switch in switches:
            switch()
        for m in plan.started:
            app.start_poller(m.id)
        log.info("config_reloaded", source=plan.config.source, added=[m.id for m in plan.added],
                 removed=list(plan.removed), changed=[m.id for m in plan.changed])
        if plan.restart_needed:
            log.warning("config_reload_restart_needed", sections=list(plan.restart_needed))
