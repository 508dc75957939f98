"""The composition root: ``egauge-gateway run -c FILE``.

:class:`App` builds the hub, one meter client, lane and poller per meter, and the outputs
(each a :class:`Component`: an optional hub sink with ``start``/``serve``/``stop``), runs them
in one ``asyncio.TaskGroup`` and stops them in order on SIGTERM or SIGINT:

1. stop the pollers (no poll is cut off inside a command: both share the meter's lane);
2. publish every meter offline through the hub (MQTT availability, Modbus status, ...);
3. log out of the meters;
4. stop the components in reverse order (MQTT: ``bridge/state`` offline, then DISCONNECT).

All of it within ``gateway.shutdown_timeout_s``. SIGHUP reloads the configuration file: its
meter changes are applied without dropping the MQTT session or Modbus clients (see
:mod:`gateway.reload`); an invalid file is refused (``config_reload_refused``) and the running
configuration kept. Under systemd (``$NOTIFY_SOCKET``) the app reports READY, RELOADING,
STOPPING and STATUS, and pings the watchdog while its pollers make progress. Exit codes:
0 clean stop, 78 invalid configuration, 3 start-up failure (state directory, a port,
certificates), 1 crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from gateway import __version__, shard
from gateway.cli import EXIT_CONFIG, EXIT_CRASH, EXIT_OK, EXIT_STARTUP
from gateway.config import Config, MeterConfig, load_or_report
from gateway.errors import ConfigError, GatewayError
from gateway.hub import Hub, Sink
from gateway.model import Availability
from gateway.notify import Notifier, Watchdog, watchdog_interval
from gateway.poller import MeterSource, Poller

if TYPE_CHECKING:
    from gateway.commands import CommandRouter
    from gateway.endpoint import HttpEndpoint
    from gateway.history import History
    from gateway.metrics import CommandTally
    from gateway.modbus.output import ModbusOutput
    from gateway.mqtt.output import MqttOutput
    from gateway.sparkplug.output import SparkplugOutput

log = structlog.get_logger(__name__)


class MeterClientLike(MeterSource, Protocol):
    """A meter client as the app uses it: a poll source that can log out."""

    async def aclose(self) -> None: ...


ClientFactory = Callable[[MeterConfig], MeterClientLike]
MeterHook = Callable[[Sequence[MeterConfig]], Callable[[], None]]


@dataclass
class Component:
    """One output or service: optionally a hub sink, with lifecycle steps (all optional).

    ``start`` runs before any poll (a failure is a start-up failure), ``serve`` runs as a
    task of the app's TaskGroup, ``stop`` runs at shutdown after the meters went offline.
    ``meters`` checks the meter set of a configuration reload (raising :class:`ConfigError`
    and changing nothing when it cannot serve it) and returns the step that switches to it."""

    name: str
    sink: Sink | None = None
    start: Callable[[], Awaitable[None]] | None = None
    serve: Callable[[], Coroutine[Any, Any, None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    meters: MeterHook | None = None


class StartupFailed(GatewayError):
    """Something the gateway needs at start is not there (exit code 3)."""


class _MeterClients:
    """The default client factory: real meter clients that share their TLS contexts."""

    def __init__(self) -> None:
        from gateway.meter.channel import TlsContexts

        self._tls = TlsContexts()

    def __call__(self, cfg: MeterConfig) -> MeterClientLike:
        from gateway.meter.client import MeterClient

        return MeterClient.from_config(cfg, tls=self._tls)


class App:
    """Builds, starts, runs and stops the gateway."""

    def __init__(
        self,
        config: Config,
        *,
        client_factory: ClientFactory | None = None,
        extensions: Sequence[Callable[[App], None]] = (),
        notifier: Notifier | None = None,
    ) -> None:
        """``extensions`` run at the end of :meth:`build` (clients, lanes and pollers exist
        then) and may :meth:`add` further components. ``notifier`` defaults to systemd's
        ``$NOTIFY_SOCKET`` (none: no notifications). With ``shard`` in ``config`` the app
        runs only its own share of the meters (:func:`gateway.shard.instance`)."""
        self.config = config = shard.instance(config)
        self._extensions = tuple(extensions)
        self.hub = Hub(m.id for m in config.meters)
        self.lanes = {m.id: asyncio.Lock() for m in config.meters}
        self.clients: dict[str, MeterClientLike] = {}
        self.pollers: dict[str, Poller] = {}
        self.components: list[Component] = []
        self.mqtt: MqttOutput | None = None  # set by build() when mqtt.enabled
        self.modbus: ModbusOutput | None = None  # set by build() when modbus.enabled
        self.router: CommandRouter | None = None  # set by build(): MQTT requests, Modbus writes
        self.http: HttpEndpoint | None = None  # set by build() when http.enabled
        self.history: History | None = None  # set by build() with mqtt and history enabled
        self.sparkplug: SparkplugOutput | None = None  # set by build() when sparkplug.enabled
        self.command_tally: CommandTally | None = None  # set with the router
        self.notifier = Notifier.from_env() if notifier is None else notifier
        self.watchdog: Watchdog | None = None  # set by start() when systemd asks for one
        self.stopping = False
        self.client_factory = client_factory or _MeterClients()
        self._poll_tasks: dict[str, asyncio.Task[None]] = {}
        self._serve_tasks: list[asyncio.Task[None]] = []
        self._own_tasks: list[asyncio.Task[None]] = []  # watchdog and reloads
        self._started: list[Component] = []
        self._stop = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None

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
        count = len(self.config.meters)
        for i, m in enumerate(self.config.meters):
            phase = m.poll_interval_s * i / count  # spread the fleet's polls over the interval
            self.add_poller(m, self.client_factory(m), phase)
        if self.config.http.enabled:
            from gateway.endpoint import HttpEndpoint

            http = self.http = HttpEndpoint(self)
            self.add(Component("http", None, http.start, None, http.close))
        if self.config.mqtt.enabled:
            from gateway.mqtt.output import create_output

            mqtt = self.mqtt = create_output(self.config, outputs=self.output_names)
            self.add(Component("mqtt", mqtt, mqtt.start, mqtt.serve, mqtt.stop,
                               mqtt.prepare_meters))
            self._build_commands(mqtt)
            if self.config.history.enabled:
                self._build_history(mqtt)
        else:
            self._build_commands(None)
        if self.config.modbus.enabled:
            from gateway.modbus.output import ModbusOutput

            modbus = self.modbus = ModbusOutput(
                self.config.modbus, self.config.meters, self.config.gateway.state_dir,
                router=self.router,
            )
            self.add(Component("modbus", modbus, modbus.start, None, modbus.close,
                               modbus.prepare_meters))
        if self.config.sparkplug.enabled:
            self._build_sparkplug()
        for extend in self._extensions:
            extend(self)

    def add_poller(self, m: MeterConfig, client: MeterClientLike, phase_s: float = 0.0) -> None:
        """Poll ``m`` with ``client`` (its task starts with :meth:`start_poller`)."""
        self.clients[m.id] = client
        lane = self.lanes.setdefault(m.id, asyncio.Lock())
        self.pollers[m.id] = Poller(m, client, self.hub, lane, phase_s=phase_s)

    def _build_commands(self, mqtt: MqttOutput | None) -> None:
        """The command router, fed by MQTT request topics (with ``mqtt``) and by Modbus writes
        (``modbus.writes``); it shares the pollers' lanes."""
        from gateway.commands import CommandRouter
        from gateway.metrics import CommandTally

        tally = self.command_tally = CommandTally()
        router = self.router = CommandRouter(
            self.clients,  # type: ignore[arg-type]  # the real MeterClient is a MeterApi
            {m.id: m.commands for m in self.config.meters},
            self.lanes,
            is_online=self.is_online,
            audit=tally,
        )
        binding = None
        if mqtt is not None:
            from gateway.mqtt.requests import AuditPublisher, RequestBinding

            router.add_audit(AuditPublisher(mqtt.connection, mqtt.topics))
            binding = RequestBinding(mqtt.connection, router, mqtt.topics)
            binding.attach()

        def meters(configs: Sequence[MeterConfig]) -> Callable[[], None]:
            def switch() -> None:  # runs once self.clients and self.lanes hold the new set
                router.set_meters(
                    {m.id: self.clients[m.id] for m in configs},  # type: ignore[misc]
                    {m.id: m.commands for m in configs}, self.lanes)
                if binding is not None:
                    binding.set_meters(m.id for m in configs)
            return switch

        self.add(Component("commands", serve=binding.run if binding else None, meters=meters))

    def _build_history(self, mqtt: MqttOutput) -> None:
        """Gap-free history: a hub sink that backfills gaps through each meter's lane."""
        from gateway.history import History, HistorySource, Lane

        def lane(meter: str) -> Lane | None:
            poller, client = self.pollers.get(meter), self.clients.get(meter)
            if poller is None or not isinstance(client, HistorySource):
                return None
            return Lane(client, self.lanes[meter], lambda: poller.next_due)

        history = self.history = History(
            self.config.history, (m.id for m in self.config.meters), mqtt, lane,
            shard.instance_dir(self.config),
        )

        def meters(configs: Sequence[MeterConfig]) -> Callable[[], None]:
            return lambda: history.set_meters(m.id for m in configs)

        self.add(Component("history", history, history.start, history.serve, history.stop,
                           meters))

    def _build_sparkplug(self) -> None:
        """Sparkplug B: the gateway as one Edge Node on its own MQTT connection; DCMD writes
        go through the command router, backfilled history rows also go out as historical
        DDATA (they come from the MQTT output, whose acknowledgements track the gaps)."""
        from gateway.commands import CommandRequest, CommandResponse
        from gateway.sparkplug import create_output

        router = self.router

        async def submit(meter: str, action: str, fields: dict[str, Any], client: str
                         ) -> CommandResponse:
            request = CommandRequest.build(meter, action, fields, source="sparkplug",
                                           client=client)
            response = None if router is None else await router.handle(request)
            return response or CommandResponse(meter, action, "error", error="not handled",
                                               code="invalid")

        spb = self.sparkplug = create_output(self.config, submit=submit)
        self.add(Component("sparkplug", spb, spb.start, spb.serve, spb.stop, spb.prepare_meters))
        if self.mqtt is not None and self.history is not None:
            self.mqtt.on_history_published(spb.publish_history)

    def is_online(self, meter: str) -> bool:
        """Not known to be offline: a meter not polled yet may still take a command."""
        availability = self.hub.meter(meter).availability
        return availability is None or availability.online

    def output_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    async def start(self, tg: asyncio.TaskGroup) -> None:
        """Start the components, then their ``serve`` tasks, then one poller task per meter."""
        for c in self.components:
            if c.start is not None:
                await c.start()
            self._started.append(c)
        for c in self.components:
            if c.serve is not None:
                self._serve_tasks.append(tg.create_task(c.serve(), name=f"{c.name}:serve"))
        self._tg = tg
        for meter in self.pollers:
            self.start_poller(meter)
        from gateway.reload import Reloader

        reloads = Reloader(self).serve(self._reload_wanted)
        self._own_tasks.append(tg.create_task(reloads, name="config-reload"))
        interval = watchdog_interval()
        if interval is not None and self.notifier.enabled:
            dog = self.watchdog = Watchdog(self.notifier, interval, self.stuck_pollers)
            self._own_tasks.append(tg.create_task(dog.run(), name="watchdog"))
        settle_heap()
        log.info("gateway_started", gateway=self.config.gateway.id, version=__version__,
                 meters=len(self.pollers), outputs=list(self.output_names()))

    def start_poller(self, meter: str) -> None:
        assert self._tg is not None
        task = self._tg.create_task(self.pollers[meter].run(), name=f"poll:{meter}")
        self._poll_tasks[meter] = task

    async def stop_pollers(self, meters: Sequence[str]) -> None:
        """End these meters' poll tasks (a poll in progress is cancelled)."""
        await _cancel([t for m in meters if (t := self._poll_tasks.pop(m, None))])

    def stuck_pollers(self) -> list[str]:
        """The meters whose poller makes no progress: its task ended, or one poll outlived
        three intervals and its own deadline."""
        return [m for m, p in self.pollers.items()
                if (t := self._poll_tasks.get(m)) is None or t.done() or p.stalled()]

    def status_line(self) -> str:
        online = sum(1 for p in self.pollers.values() if p.stats.online)
        return f"{online} of {len(self.pollers)} meters online; outputs: " + (
            ", ".join(self.output_names()) or "none")

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        """Re-read the configuration file soon (see :class:`gateway.reload.Reloader`)."""
        self._reload_wanted.set()

    async def stop(self) -> None:
        """The ordered shutdown (see the module docstring)."""
        self.stopping = True
        self.notifier.stopping()
        await _cancel(self._own_tasks)
        await _cancel(list(self._poll_tasks.values()))
        now = time.time()
        for meter in self.pollers:
            self.hub.publish_availability(Availability(meter, False, now, "shutdown"))
        await close_clients(self.clients)
        await self._stop_components()
        await _cancel(self._serve_tasks)

    async def _stop_components(self) -> None:
        """Stop the components that started, in reverse order; a failure is only logged."""
        while self._started:
            c = self._started.pop()
            if c.stop is None:
                continue
            try:
                await c.stop()
            except Exception as exc:
                log.error("component_stop_failed", component=c.name, error=repr(exc),
                          exc_info=exc)

    async def run(self) -> int:
        """Build, start, wait for SIGTERM/SIGINT, stop; return the exit code."""
        signals = self._catch_signals()
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
                    await _cancel([*self._own_tasks, *self._poll_tasks.values(),
                                   *self._serve_tasks])
        except Exception as exc:
            log.error("gateway_crashed", error=repr(exc), exc_info=exc)
            return EXIT_CRASH
        finally:
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        log.info("gateway_stopped", gateway=self.config.gateway.id)
        return EXIT_OK

    def _catch_signals(self) -> list[signal.Signals]:
        """SIGTERM and SIGINT ask for the ordered stop, SIGHUP for a reload (only possible in
        the main thread)."""
        loop = asyncio.get_running_loop()
        caught = []
        actions = {signal.SIGTERM: self.request_stop, signal.SIGINT: self.request_stop,
                   signal.SIGHUP: self.request_reload}
        for sig, action in actions.items():
            try:
                loop.add_signal_handler(sig, action)
            except (ValueError, RuntimeError, NotImplementedError):
                continue
            caught.append(sig)
        return caught

    async def _abort(self, exc: BaseException) -> None:
        problems = exc.problems if isinstance(exc, ConfigError) else (str(exc),)
        log.error("startup_failed", problems=list(problems))
        await _cancel([*self._own_tasks, *self._poll_tasks.values(), *self._serve_tasks])
        await self._stop_components()
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()


async def close_clients(clients: dict[str, MeterClientLike]) -> None:
    """Log these clients out of their meters (concurrently); a failure is only logged."""
    results = await asyncio.gather(*(c.aclose() for c in clients.values()),
                                   return_exceptions=True)
    for meter, result in zip(clients, results, strict=True):
        if isinstance(result, Exception):
            log.warning("meter_logout_failed", meter=meter, error=repr(result))


def settle_heap() -> None:
    """Exempt what start-up built (meter clients, plans, images) from the cyclic garbage
    collector: otherwise each full collection scans every one of those long-lived objects
    again, which at hundreds of meters stalls the event loop (and every poll) for 100 ms.
    The garbage is collected first, once, so that it is not kept for good."""
    gc.collect()
    gc.freeze()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel these tasks and wait until they have ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(args: argparse.Namespace) -> int:
    """``egauge-gateway run -c FILE``."""
    from gateway.logs import configure_logging

    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    return asyncio.run(App(config).run())
