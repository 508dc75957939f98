"""The composition root: ``egauge-gateway run -c FILE``.

:class:`App` builds the hub, the fleet (one meter client, lane and poller per meter,
:mod:`gateway.runtime.fleet`) and the outputs (each a :class:`Component`), runs them in one
``asyncio.TaskGroup`` and stops them in order on SIGTERM or SIGINT:

1. stop the pollers (no poll is cut off inside a command: both share the meter's lane);
2. drain the components: the commands in flight are answered, new ones refused;
3. publish every meter offline through the hub (MQTT availability, Modbus status, ...);
4. log out of the meters;
5. stop the components in reverse order (MQTT: ``bridge/state`` offline, then DISCONNECT).

All of it within ``gateway.shutdown_timeout_s``. A second SIGTERM or SIGINT during the
shutdown forces the exit: the state files are written at once and the process ends with
exit code 1 (as uvicorn does). A crash (an exception escaping a component) also writes the
state files (Modbus pins, slug pins, the retained-topic ledger, the history watermarks,
the energy counters) before the exit.
SIGHUP reloads the configuration file: its meter changes are applied without dropping the
MQTT session or Modbus clients (:mod:`gateway.runtime.reload`); an invalid file is refused
(``config_reload_refused``) and the running configuration kept. Under systemd
(``$NOTIFY_SOCKET``) the app reports READY, RELOADING, STOPPING and STATUS, and pings the
watchdog while its pollers make progress. An event loop blocked for ``gateway.loop_stall_s``
ends the process (:mod:`gateway.runtime.stall`). Exit codes: :mod:`gateway.errors`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import structlog

from gateway import __version__
from gateway.alerts import AlertWatch
from gateway.commands import CommandRouter, CommandTally
from gateway.config import Config, load_or_report, shard
from gateway.core import Hub, Pace, Poller
from gateway.energy import Energy
from gateway.errors import (
    EXIT_CONFIG,
    EXIT_CRASH,
    EXIT_OK,
    EXIT_STARTUP,
    ConfigError,
    StartupFailed,
)
from gateway.history import History
from gateway.meter import MeterClient
from gateway.modbus import ModbusOutput
from gateway.mqtt import (
    MqttOutput,
    RegisterIdentities,
    create_output,
)
from gateway.observe import HttpEndpoint, PowerTrend
from gateway.runtime.charts import LastCaptures
from gateway.runtime.component import Component
from gateway.runtime.fleet import ClientFactory, Fleet, WebApiClients, cancel, close_clients
from gateway.runtime.notify import Notifier, Watchdog, watchdog_interval
from gateway.runtime.reload import reload_plan
from gateway.runtime.signals import Signals
from gateway.runtime.stall import LoopWatchdog, Stall, end_process
from gateway.runtime.view import AppView
from gateway.runtime.wiring import (
    alert_component,
    commands_component,
    energy_component,
    history_component,
    identities_component,
    sparkplug_component,
    status_component,
)
from gateway.sparkplug import SparkplugOutput
from gateway.support import configure_logging

log = structlog.get_logger(__name__)

FORCE_EXIT_S = 3.0  # after a forced stop, the process ends this long later come what may


class App:
    """Builds, starts, runs and stops the gateway."""

    def __init__(
        self,
        config: Config,
        *,
        client_factory: ClientFactory | None = None,
        extensions: Sequence[Callable[[App], None]] = (),
        notifier: Notifier | None = None,
        owns_process: bool = False,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> None:
        """``extensions`` run at the end of :meth:`build` (clients, lanes and pollers exist
        then) and may :meth:`add` further components. ``notifier`` defaults to systemd's
        ``$NOTIFY_SOCKET`` (none: no notifications). With ``shard`` in ``config`` the app
        runs only its own share of the meters (:func:`gateway.config.shard.instance`).
        ``owns_process``: a forced stop may end the whole process (the ``run`` command).
        ``on_stall``: what the loop watchdog does when the loop stood still for
        ``gateway.loop_stall_s`` (default: end the process when ``owns_process``, else no
        loop watchdog at all)."""
        self.config = config = shard.instance(config)
        self._extensions = tuple(extensions)
        self._owns_process = owns_process
        self._on_stall = on_stall or (end_process if owns_process else None)
        self.loop_watchdog: LoopWatchdog | None = None  # set by start() (see on_stall)
        self.hub = Hub(m.id for m in config.meters)
        self.fleet = Fleet(self.hub, client_factory or WebApiClients())
        self.components: list[Component] = []
        self.mqtt: MqttOutput | None = None  # set by build() when mqtt.enabled
        self.modbus: ModbusOutput | None = None  # set by build() when modbus.enabled
        self.router: CommandRouter | None = None  # set by build(): MQTT requests, Modbus writes
        self.http: HttpEndpoint | None = None  # set by build() when http.enabled
        self.history: History | None = None  # set by build() with mqtt and history enabled
        self.energy: Energy | None = None  # set by build(): the import/export counters
        self.sparkplug: SparkplugOutput | None = None  # set by build() when sparkplug.enabled
        self.identities: RegisterIdentities | None = None  # set by build(): the pinned slugs
        self.alerts: AlertWatch | None = None  # set by build() when mqtt.enabled
        self.trend: PowerTrend | None = None  # set by build() when http.enabled
        self.captures: LastCaptures | None = None  # likewise: the last capture of each meter
        self.command_tally: CommandTally | None = None  # set with the router
        self.notifier = Notifier.from_env() if notifier is None else notifier
        self.watchdog: Watchdog | None = None  # set by start() when systemd asks for one
        self.pace: Pace | None = None  # set by start(): the catch-up budgets' pace
        self.stopping = False
        self._serve_tasks: list[asyncio.Task[None]] = []
        self._own_tasks: list[asyncio.Task[None]] = []  # loop lag, watchdog, reloads, pace
        self._started: list[Component] = []
        self._stop = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._signals = Signals(stop=self.request_stop, force=self._force,
                                reload=self.request_reload)
        self._forced = False
        self._main: asyncio.Task[int] | None = None

    # -- the fleet, as tests and the demo see it -------------------------------------------

    @property
    def clients(self) -> dict[str, MeterClient]:
        return self.fleet.clients

    @property
    def lanes(self) -> dict[str, asyncio.Lock]:
        return self.fleet.lanes

    @property
    def pollers(self) -> dict[str, Poller]:
        return self.fleet.pollers

    # -- building ------------------------------------------------------------------------

    def add(self, component: Component) -> None:
        """Register an output or service (before :meth:`start`)."""
        self.components.append(component)
        if component.sink is not None:
            self.hub.add_sink(component.sink)

    def build(self) -> None:
        """Create the state directory, meter clients, pollers and the outputs."""
        state_dir = Path(self.config.gateway.state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupFailed(f"state_dir {state_dir}: {exc.strerror or exc}") from exc
        self.fleet.build(self.config.meters)
        cfg = self.config
        self.identities, identities = identities_component(cfg)
        self.add(identities)
        self.energy, energy = energy_component(cfg, self.fleet)
        self.hub.add_stage(self.energy.stage)
        self.add(energy)
        if cfg.http.enabled:
            http = self.http = HttpEndpoint(cfg.http, AppView(self))
            self.add(Component("http", start=http.start, stop=http.close))
        if cfg.mqtt.enabled:
            pollers = self.fleet.pollers
            mqtt = self.mqtt = create_output(
                cfg, outputs=self.output_names, identities=self.identities,
                poll_stats=lambda meter: p.stats if (p := pollers.get(meter)) else None)
            self.add(Component("mqtt", mqtt, mqtt.start, mqtt.serve, mqtt.stop,
                               mqtt.prepare_meters, flush=mqtt.flush))
        self._build_commands(self.mqtt)
        if self.mqtt is not None:
            if cfg.history.enabled:
                self.history, history = history_component(cfg, self.fleet, self.mqtt,
                                                          self.energy)
                self.add(history)
            self.alerts, alerts = alert_component(cfg, self.fleet, self.mqtt)
            self.add(alerts)
        if cfg.http.enabled and self.router is not None:
            self.trend, self.captures, status = status_component(self.router)
            self.add(status)
        if cfg.modbus.enabled:
            modbus = self.modbus = ModbusOutput(cfg.modbus, cfg.meters, cfg.gateway.state_dir,
                                                router=self.router)
            self.add(Component("modbus", modbus, modbus.start, modbus.serve, modbus.close,
                               modbus.prepare_meters, flush=modbus.flush))
        if cfg.sparkplug.enabled:
            assert self.router is not None
            self.sparkplug, spb = sparkplug_component(cfg, self.router, self.identities,
                                                      self.mqtt, self.history)
            self.add(spb)
        for extend in self._extensions:
            extend(self)

    def _build_commands(self, mqtt: MqttOutput | None) -> None:
        self.router, self.command_tally, commands = commands_component(
            lambda: self.config, self.fleet, mqtt, self.is_online)
        self.add(commands)

    def is_online(self, meter: str) -> bool:
        """Not known to be offline: a meter not polled yet may still take a command."""
        availability = self.hub.meter(meter).availability
        return availability is None or availability.online

    def output_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    # -- running -------------------------------------------------------------------------

    async def start(self, tg: asyncio.TaskGroup) -> None:
        """Start the components, then their ``serve`` tasks, then one poller task per meter."""
        for c in self.components:
            if c.start is not None:
                await c.start()
            self._started.append(c)
        for c in self.components:
            if c.serve is not None:
                self._serve_tasks.append(tg.create_task(c.serve(), name=f"{c.name}:serve"))
        self._own_tasks.append(tg.create_task(self.fleet.lag.run(), name="loop-lag"))
        self.fleet.start(tg)
        budgets = [s.budget for s in (self.energy, self.history) if s is not None]
        if budgets:
            self.pace = Pace(budgets, self.fleet.lapses, self.fleet.lag)
            self._own_tasks.append(tg.create_task(self.pace.run(), name="catch-up-pace"))
        self._own_tasks.append(tg.create_task(self._reloads(), name="config-reload"))
        interval = watchdog_interval()
        if interval is not None and self.notifier.enabled:
            dog = self.watchdog = Watchdog(self.notifier, interval, self.stuck_pollers)
            self._own_tasks.append(tg.create_task(dog.run(), name="watchdog"))
        settle_heap()
        limit = self.config.gateway.loop_stall_s
        if limit > 0 and self._on_stall is not None:  # until run() ends, shutdown included
            self.loop_watchdog = LoopWatchdog(limit, self._on_stall)
            self.loop_watchdog.start()
        self._own_tasks.append(tg.create_task(self._settle_when_polled(), name="settle-heap"))
        log.info("gateway_started", gateway=self.config.gateway.id, version=__version__,
                 meters=len(self.fleet.pollers), outputs=list(self.output_names()))

    async def _settle_when_polled(self, limit_s: float = 60.0) -> None:
        """Settle the heap again once every meter was polled (or tried) once: the register
        sets, plans, pins and images of the meters are built at their first poll, and left
        in the collector's care they made each full collection scan tens of thousands of
        objects (40 ms at 500 meters, every few seconds)."""
        step = min((m.poll_interval_s for m in self.config.meters), default=1.0)
        deadline = asyncio.get_running_loop().time() + limit_s
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(step)
            if all(p.stats.polls_ok or p.stats.polls_failed
                   for p in self.fleet.pollers.values()):
                break
        settle_heap()

    def stuck_pollers(self) -> list[str]:
        return self.fleet.stuck()

    def status_line(self) -> str:
        return (f"{self.fleet.online()} of {len(self.fleet.pollers)} meters online; outputs: "
                + (", ".join(self.output_names()) or "none"))

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        """Re-read the configuration file soon (:meth:`reload`)."""
        self._reload_wanted.set()

    async def _reloads(self) -> None:
        """Reload whenever one is wanted (SIGHUP), one reload at a time."""
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Apply the configuration file again. First everything that can fail (reading and
        checking the file, the new meters' clients, each component's check of the new meter
        set), then -- only when all of that worked -- the switch, which cannot fail. True
        when the new configuration runs; False when it was refused (logged as
        ``config_reload_refused`` with every problem, nothing changed)."""
        self.notifier.reloading()
        source = self.config.source
        clients: dict[str, MeterClient] = {}
        try:
            try:
                plan = await asyncio.to_thread(reload_plan, self.config)  # the loop turns on
                clients = {m.id: self.fleet.client_factory(m) for m in plan.started}
                meters = plan.config.meters
                switches = [c.meters(meters) for c in self.components if c.meters]
            except ConfigError as exc:
                log.error("config_reload_refused", source=source, problems=list(exc.problems))
                await close_clients(clients)
                return False
            except Exception as exc:  # a reload must never take the running gateway down
                log.error("config_reload_refused", source=source, problems=[repr(exc)],
                          exc_info=exc)
                await close_clients(clients)
                return False
            await self.fleet.apply(plan, clients, switches)
            self.config = plan.config
            log.info("config_reloaded", source=plan.config.source,
                     added=[m.id for m in plan.added], removed=list(plan.removed),
                     changed=[m.id for m in plan.changed])
            if plan.restart_needed:
                log.warning("config_reload_restart_needed", sections=list(plan.restart_needed))
            return True
        finally:
            self.notifier.ready(self.status_line())

    async def stop(self) -> None:
        """The ordered shutdown (see the module docstring)."""
        self.stopping = True
        self.notifier.stopping()
        await cancel(self._own_tasks)
        await self.fleet.stop_pollers()
        for c in self._started:
            if c.drain is not None:
                await self._step(c, "drain", c.drain)
        self.fleet.publish_offline("shutdown")
        await self.fleet.close()
        while self._started:
            c = self._started.pop()
            if c.stop is not None:
                await self._step(c, "stop", c.stop)
        await cancel(self._serve_tasks)

    async def _step(self, c: Component, step: str, call: Callable[[], Awaitable[None]]) -> None:
        """One shutdown step of a component; a failure is only logged."""
        try:
            await call()
        except Exception as exc:
            log.error("component_stop_failed", component=c.name, step=step, error=repr(exc),
                      exc_info=exc)

    def flush_state(self) -> None:
        """Write every component's state files now (a crash, a forced stop)."""
        for c in self.components:
            if c.flush is None:
                continue
            try:
                c.flush()
            except Exception as exc:
                log.error("state_flush_failed", component=c.name, error=repr(exc))

    async def run(self) -> int:
        """Build, start, wait for SIGTERM/SIGINT, stop; return the exit code."""
        self._main = asyncio.current_task()
        self._signals.install()
        timeout = self.config.gateway.shutdown_timeout_s
        try:
            async with asyncio.TaskGroup() as tg:
                try:
                    self.build()
                    await self.start(tg)
                except (ConfigError, StartupFailed, OSError) as exc:
                    await self._abort(exc)
                    return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_STARTUP
                self.notifier.ready(self.status_line())
                await self._stop.wait()
                log.info("gateway_stopping", timeout_s=timeout)
                try:
                    async with asyncio.timeout(timeout):
                        await self.stop()
                except TimeoutError:
                    log.warning("shutdown_timeout", timeout_s=timeout)
                    self.flush_state()
                    await cancel([*self._own_tasks, *self._serve_tasks])
                    await self.fleet.stop_pollers()
        except asyncio.CancelledError:
            if not self._forced:
                raise
            log.error("gateway_stopped_forced", gateway=self.config.gateway.id)
            return EXIT_CRASH
        except Exception as exc:
            log.error("gateway_crashed", error=repr(exc), exc_info=exc)
            self.flush_state()
            return EXIT_CRASH
        finally:
            if self.loop_watchdog is not None:
                self.loop_watchdog.stop()
            self._signals.remove()
        log.info("gateway_stopped", gateway=self.config.gateway.id)
        return EXIT_OK

    def _force(self) -> None:
        """A second SIGTERM/SIGINT: the state files now, then the run cancelled (and, for the
        ``run`` command, the process ended shortly after, whatever ignores the cancellation)."""
        self._forced = True
        self.flush_state()
        if self._main is not None:
            self._main.cancel()
        if self._owns_process:
            asyncio.get_running_loop().call_later(FORCE_EXIT_S, os._exit, EXIT_CRASH)

    async def _abort(self, exc: BaseException) -> None:
        problems = exc.problems if isinstance(exc, ConfigError) else (str(exc),)
        log.error("startup_failed", problems=list(problems))
        await cancel([*self._own_tasks, *self._serve_tasks])
        await self.fleet.stop_pollers()
        while self._started:
            c = self._started.pop()
            if c.stop is not None:
                await self._step(c, "stop", c.stop)
        for client in self.fleet.clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()


YOUNG_GC_THRESHOLD = 10_000  # allocations between two collections of the youngest objects


def settle_heap() -> None:
    """Exempt what start-up built (meter clients, plans, images) from the cyclic garbage
    collector: otherwise each full collection scans every one of those long-lived objects
    again, which at hundreds of meters stalls the event loop (and every poll) for 100 ms.
    The garbage is collected first, once, so that it is not kept for good.

    The youngest generation is collected every :data:`YOUNG_GC_THRESHOLD` allocations
    instead of CPython's 700: with 700, the objects of the polls still in flight were
    promoted to the older generations at almost every collection and made their passes
    (5 ms, and 85-100 ms every 20 s at 500 meters) frequent; the p99 poll latency at 500
    meters went from 11-19 ms to 3 ms, at the same CPU and memory (bench/RESULTS.md)."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), middle, old)


def main(args: argparse.Namespace) -> int:
    """``egauge-gateway run -c FILE``."""
    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    return asyncio.run(App(config, owns_process=True).run())
