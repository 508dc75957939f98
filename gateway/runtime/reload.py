"""What a configuration reload (SIGHUP) changes: a plan computed from the running and the new
configuration, before anything is touched.

Meters are the unit of a reload: added meters start polling, removed meters stop (shown
offline, logged out, their outputs go away), changed meters restart with their new settings,
the rest keep running undisturbed. The other sections (``gateway``, ``mqtt``, ``modbus``,
``http``, ``history``, ``commands``) configure sessions, listening sockets and limits that a
reload must not drop: their changes wait for a restart and are reported as ``restart_needed``.

Everything here is pure: :func:`plan_reload` compares two configurations. Applying a plan is
the job of the objects that own what it replaces (:meth:`gateway.runtime.fleet.Fleet.apply`
and each component's ``meters`` step), driven by the app.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from gateway.config import Config, MeterConfig, load_config, shard

SECTIONS: Final = ("gateway", "mqtt", "modbus", "http", "history", "sparkplug", "commands")


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
        config=replace(running, meters=new.meters, source=new.source or running.source,
                       foreign_meters=new.foreign_meters if new.foreign_meters is not None
                       else running.foreign_meters),
        added=tuple(m for m in new.meters if m.id not in old),
        removed=tuple(m for m in old if m not in ids),
        changed=tuple(m for m in new.meters if m.id in old and old[m.id] != m),
        restart_needed=tuple(s for s in SECTIONS if getattr(running, s) != getattr(new, s)),
    )


def reload_plan(running: Config) -> ReloadPlan:
    """Read the running configuration's file again and plan the reload (as this shard
    instance applies it: a new ``shard`` split waits for a restart). Raises
    :class:`~gateway.errors.ConfigError` with every problem of an invalid file."""
    new, split_changed = shard.reloaded(running, load_config(running.source))
    plan = plan_reload(running, new)
    if split_changed:
        plan = replace(plan, restart_needed=(*plan.restart_needed, "shard"))
    return plan
