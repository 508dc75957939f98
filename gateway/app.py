"""The composition root: ``egauge-gateway run -c FILE``.

:class:`App` builds the hub, one meter client, lane and poller per meter, and the outputs
(each a :class:`Component`: an optional hub sink with ``start``/``serve``/``stop``), runs them
in one ``asyncio.TaskGroup`` and stops them in order on SIGTERM or SIGINT:

1. stop the pollers (no poll is cut off inside a command: both share the meter's lane);
2. publish every meter offline through the hub (MQTT availability, Modbus status, ...);
3. log out of the meters;
4. stop the components in reverse order (MQTT: ``bridge/state`` offline, then DISCONNECT).

All of it within ``gateway.shutdown_timeout_s``. Exit codes: 0 clean stop, 78 invalid
configuration, 3 start-up failure (state directory, a port, certificates), 1 crash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from gateway import __version__
from gateway.cli import EXIT_CONFIG, EXIT_CRASH, EXIT_OK, EXIT_STARTUP
from gateway.config import Config, MeterConfig, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.hub import Hub, Sink
from gateway.model import Availability
from gateway.poller import MeterSource, Poller

if TYPE_CHECKING:
    from gateway.commands import CommandRouter
    from gateway.modbus.output import ModbusOutput
    from gateway.mqtt.output import MqttOutput

log = structlog.get_logger(__name__)


class MeterClientLike(MeterSource, Protocol):
    """A meter client as the app uses it: a poll source that can log out."""

    async def aclose(self) -> None: ...


ClientFactory = Callable[[MeterConfig], MeterClientLike]


@dataclass
class Component:
    """One output or service: optionally a hub sink, with lifecycle steps (all optional).

    ``start`` runs before any poll (a failure is a start-up failure), ``serve`` runs as a
    task of the app's TaskGroup, ``stop`` runs at shutdown after the meters went offline."""

    name: str
    sink: Sink | None = None
    start: Callable[[], Awaitable[None]] | None = None
    serve: Callable[[], Coroutine[Any, Any, None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None


class StartupFailed(GatewayError):
    """Something the gateway needs at start is not there (exit code 3)."""


def _default_client(cfg: MeterConfig) -> MeterClientLike:
    from gateway.meter.client import MeterClient

    return MeterClient.from_config(cfg)


class App:
    """Builds, starts, runs and stops the gateway."""

    def __init__(
        self,
        config: Config,
        *,
        client_factory: ClientFactory = _default_client,
        extensions: Sequence[Callable[[App], None]] = (),
    ) -> None:
        """``extensions`` run at the end of :meth:`build` (clients, lanes and pollers exist
        then) and may :meth:`add` further components."""
        self.config = config
        self._extensions = tuple(extensions)
        self.hub = Hub(m.id for m in config.meters)
        self.lanes = {m.id: asyncio.Lock() for m in config.meters}
        self.clients: dict[str, MeterClientLike] = {}
        self.pollers: dict[str, Poller] = {}
        self.components: list[Component] = []
        self.mqtt: MqttOutput | None = None  # set by build() when mqtt.enabled
        self.modbus: ModbusOutput | None = None  # set by build() when modbus.enabled
        self.router: CommandRouter | None = None  # set by build() when mqtt.enabled
        self._client_factory = client_factory
        self._poll_tasks: list[asyncio.Task[None]] = []
        self._serve_tasks: list[asyncio.Task[None]] = []
        self._started: list[Component] = []
        self._stop = asyncio.Event()

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
            client = self._client_factory(m)
            self.clients[m.id] = client
            phase = m.poll_interval_s * i / count  # spread the fleet's polls over the interval
            self.pollers[m.id] = Poller(m, client, self.hub, self.lanes[m.id], phase_s=phase)
        if self.config.mqtt.enabled:
            from gateway.mqtt.output import create_output

            mqtt = self.mqtt = create_output(self.config, outputs=self.output_names)
            self.add(Component("mqtt", mqtt, mqtt.start, mqtt.serve, mqtt.stop))
            self._build_commands(mqtt)
        if self.config.modbus.enabled:
            from gateway.modbus.output import ModbusOutput

            modbus = self.modbus = ModbusOutput(
                self.config.modbus, self.config.meters, self.config.gateway.state_dir
            )
            self.add(Component("modbus", modbus, modbus.start, None, modbus.close))
        for extend in self._extensions:
            extend(self)

    def _build_commands(self, mqtt: MqttOutput) -> None:
        """The command router, fed by MQTT request topics; it shares the pollers' lanes."""
        from gateway.commands import CommandRouter
        from gateway.mqtt.requests import AuditPublisher, RequestBinding

        conn = mqtt.connection
        router = self.router = CommandRouter(
            self.clients,  # type: ignore[arg-type]  # the real MeterClient is a MeterApi
            {m.id: m.commands for m in self.config.meters},
            self.lanes,
            is_online=self.is_online,
            audit=AuditPublisher(conn, mqtt.topics),
        )
        binding = RequestBinding(conn, router, mqtt.topics)
        binding.attach()
        self.add(Component("commands", serve=binding.run))

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
        for meter, poller in self.pollers.items():
            self._poll_tasks.append(tg.create_task(poller.run(), name=f"poll:{meter}"))
        log.info("gateway_started", gateway=self.config.gateway.id, version=__version__,
                 meters=len(self.pollers), outputs=list(self.output_names()))

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        """The ordered shutdown (see the module docstring)."""
        await _cancel(self._poll_tasks)
        now = time.time()
        for meter in self.pollers:
            self.hub.publish_availability(Availability(meter, False, now, "shutdown"))
        results = await asyncio.gather(
            *(c.aclose() for c in self.clients.values()), return_exceptions=True
        )
        for meter, result in zip(self.clients, results, strict=True):
            if isinstance(result, Exception):
                log.warning("meter_logout_failed", meter=meter, error=repr(result))
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
                await self._stop.wait()
                log.info("gateway_stopping", timeout_s=timeout)
                try:
                    async with asyncio.timeout(timeout):
                        await self.stop()
                except TimeoutError:
                    log.warning("shutdown_timeout", timeout_s=timeout)
                    await _cancel(self._poll_tasks + self._serve_tasks)
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
        """SIGTERM and SIGINT ask for the ordered stop (only possible in the main thread)."""
        loop = asyncio.get_running_loop()
        caught = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (ValueError, RuntimeError, NotImplementedError):
                continue
            caught.append(sig)
        return caught

    async def _abort(self, exc: BaseException) -> None:
        problems = exc.problems if isinstance(exc, ConfigError) else (str(exc),)
        log.error("startup_failed", problems=list(problems))
        await _cancel(self._poll_tasks + self._serve_tasks)
        await self._stop_components()
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel these tasks and wait until they have ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(args: argparse.Namespace) -> int:
    """``egauge-gateway run -c FILE``."""
    from gateway.logs import configure_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    return asyncio.run(App(config).run())
