"""Every core of one machine: ``gateway.workers: N | auto`` runs N worker processes.

One gateway process runs one asyncio loop, one core. With ``workers`` above 1, ``egauge-gateway
run`` becomes a :class:`Supervisor` of that many workers (``auto``: one per CPU the process
may use, ``os.sched_getaffinity``; never more than there are meters). Each worker is the
gateway over its share of the meters (the split of :mod:`gateway.config.shard`, by meter id),
started as ``python -m gateway run -c FILE --worker J/N`` (:mod:`gateway.runtime.workerproc`).
The supervisor itself polls nothing; it

- restarts a worker that ended (logged ``worker_exited``, counted per worker in ``/metrics``)
  after 1 s, doubling up to 30 s while it keeps failing (a worker that ran 60 s starts over
  at 1 s), and marks the dead worker's meters offline on MQTT meanwhile;
- forwards SIGTERM/SIGINT (once) and SIGHUP to every worker; a second SIGTERM/SIGINT is
  forwarded too (the workers then force their stop, as a single process does) and makes the
  supervisor exit 1; after ``shutdown_timeout_s`` + 5 s a worker still running is killed;
- tells systemd READY once every worker reported ready, RELOADING/READY around a reload,
  STOPPING, and, with a watchdog, pings it while it runs and kills a worker whose own
  watchdog pings stopped (it is then restarted);
- exits 0 when every worker stopped cleanly (exit code 0), 1 otherwise;
- serves the gateway's one Modbus endpoint (``modbus.port``, relayed by unit id to the
  worker that polls the unit's meter: :mod:`gateway.modbus.relay`), its one HTTP endpoint
  (:mod:`gateway.observe.supervised`) and its MQTT bridge topics (``bridge/state``,
  ``bridge/info``, the Home Assistant bridge device: :mod:`gateway.mqtt.bridge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from gateway import __version__
from gateway.config import Config, MeterConfig, load_config, shard
from gateway.errors import (
    EXIT_CONFIG,
    EXIT_CRASH,
    EXIT_OK,
    EXIT_STARTUP,
    ConfigError,
    GatewayError,
)
from gateway.modbus import DOWN, Down, ModbusRelay
from gateway.mqtt import GatewayBridge
from gateway.observe import (
    MqttStats,
    OutputStatus,
    RelayCounters,
    SupervisorEndpoint,
    WorkerStatus,
)
from gateway.runtime.notify import Notifier, watchdog_interval
from gateway.runtime.workerproc import WorkerProcess, describe_exit

log = structlog.get_logger(__name__)

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
STABLE_S = 60.0  # a worker that ran this long restarts after RESTART_MIN_S again
KILL_GRACE_S = 5.0  # after shutdown_timeout_s, before a worker still running is killed
FORCE_EXIT_S = 5.0  # after a forced stop, the supervisor ends this long later come what may
RELOAD_WAIT_S = 30.0  # how long READY waits for the workers after a reload


def effective_workers(config: Config, cpus: int | None = None) -> int:
    """How many workers ``config`` runs: ``gateway.workers``, at most one per meter of this
    instance (a worker without meters would have nothing to do)."""
    own = shard.partition(config.meters, config.shard)
    return max(1, min(shard.worker_count(config, cpus), len(own)))


class Supervisor:
    """Runs, watches and stops the workers of one configuration."""

    def __init__(self, config: Config, *, workers: int | None = None,
                 notifier: Notifier | None = None, argv: Sequence[str] | None = None,
                 restart_min_s: float = RESTART_MIN_S,
                 restart_max_s: float = RESTART_MAX_S) -> None:
        self.config = shard.instance(replace(config, worker=None))  # the instance's ports
        self._file = config
        self.count = workers if workers is not None else effective_workers(config)
        self.notifier = Notifier.from_env() if notifier is None else notifier
        self._restart = (restart_min_s, restart_max_s)
        self._watchdog_s = watchdog_interval() if self.notifier.enabled else None
        usec = int(self._watchdog_s * 2e6) if self._watchdog_s else None
        meters = shard.worker_meters(config, self.count)
        self._changed = asyncio.Event()  # a worker reported ready, or ended
        self.workers = [WorkerProcess(j, self.count, config.source, [m.id for m in meters[j]],
                                      watchdog_usec=usec, argv=argv,
                                      on_ready=lambda _w: self._changed.set())
                        for j in range(self.count)]
        self._units = self._unit_map(meters)
        self.stopping = False
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._signals = 0
        self._forced = False
        self._started = time.time()
        cfg = self.config
        self.bridge = (GatewayBridge(cfg, [w.meters for w in self.workers], self._outputs)
                       if cfg.mqtt.enabled else None)
        self.relay = (ModbusRelay(cfg.modbus.host, cfg.modbus.port, self.route,
                                  answer_unknown=cfg.modbus.unknown_unit == "exception")
                      if cfg.modbus.enabled else None)
        self.http = SupervisorEndpoint(cfg.http, _View(self)) if cfg.http.enabled else None

    # -- routing -------------------------------------------------------------------------

    @staticmethod
    def _unit_map(meters: Sequence[Sequence[MeterConfig]]) -> dict[int, int]:
        return {m.modbus_unit_id: index for index, own in enumerate(meters) for m in own}

    def route(self, unit: int) -> tuple[str, int] | Down | None:
        """Where a Modbus request for ``unit`` goes: its worker's loopback server, ``DOWN``
        while that worker is not serving, ``None`` for a unit no meter has."""
        index = self._units.get(unit)
        if index is None:
            return None
        worker = self.workers[index]
        if not (worker.running and worker.ready and worker.modbus_port):
            return DOWN
        return (shard.LOOPBACK, worker.modbus_port)

    def _outputs(self) -> tuple[str, ...]:
        cfg = self.config
        names = ["mqtt"] if cfg.mqtt.enabled else []
        names += ["modbus"] if cfg.modbus.enabled else []
        names += ["http"] if cfg.http.enabled else []
        names += ["history"] if cfg.mqtt.enabled and cfg.history.enabled else []
        names += ["sparkplug"] if cfg.sparkplug.enabled else []
        return tuple(names)

    # -- running -------------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, supervise until SIGTERM/SIGINT, stop; the exit code."""
        signals = self._catch_signals()
        try:
            try:
                await self._start_outputs()
            except (GatewayError, OSError) as exc:
                log.error("startup_failed", problems=[str(exc)])
                await self._stop_outputs()
                return EXIT_STARTUP
            log.info("supervisor_started", gateway=self.config.gateway.id, version=__version__,
                     workers=self.count, meters=sum(len(w.meters) for w in self.workers))
            codes = await self._supervise()
        finally:
            loop = asyncio.get_running_loop()
            for sig in signals:
                loop.remove_signal_handler(sig)
        if self._forced:
            log.error("supervisor_stopped_forced", gateway=self.config.gateway.id)
            return EXIT_CRASH
        clean = all(code == 0 for code in codes)
        log.info("supervisor_stopped", gateway=self.config.gateway.id,
                 exits=[describe_exit(c) for c in codes])
        return EXIT_OK if clean else EXIT_CRASH

    async def _start_outputs(self) -> None:
        if self.relay is not None:
            await self.relay.start()
        if self.http is not None:
            await self.http.start()
        if self.bridge is not None:
            await self.bridge.start()

    async def _stop_outputs(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop(grace_s=max(0.5, self.config.gateway.shutdown_timeout_s / 3))
        if self.relay is not None:
            await self.relay.close()
        if self.http is not None:
            await self.http.close()

    async def _supervise(self) -> list[int]:
        codes: list[int] = [0] * self.count
        async with asyncio.TaskGroup() as tg:
            bridge = (tg.create_task(self.bridge.serve(), name="bridge:serve")
                      if self.bridge is not None else None)
            keepers = [tg.create_task(self._keep(w, codes), name=f"worker:{w.index}")
                       for w in self.workers]
            own = [tg.create_task(self._announce_ready(), name="supervisor-ready"),
                   tg.create_task(self._reloads(), name="supervisor-reload")]
            if self._watchdog_s is not None:
                own.append(tg.create_task(self._watchdog(self._watchdog_s), name="watchdog"))
            await self._stop.wait()
            self.stopping = True
            self.notifier.stopping()
            timeout = self.config.gateway.shutdown_timeout_s + KILL_GRACE_S
            log.info("gateway_stopping", timeout_s=timeout, workers=self.count)
            self._signal_workers(signal.SIGTERM)
            self._wake.set()
            _, pending = await asyncio.wait(keepers, timeout=timeout)
            if pending:
                for w in self.workers:
                    if w.send_signal(signal.SIGKILL):
                        log.warning("worker_killed", worker=w.index, pid=w.pid,
                                    reason="no stop within the shutdown timeout")
                await asyncio.wait(pending)
            for task in own:
                task.cancel()
            await self._stop_outputs()
            if bridge is not None:
                bridge.cancel()
        return codes

    async def _keep(self, worker: WorkerProcess, codes: list[int]) -> None:
        """Run ``worker`` until the supervisor stops, restarting it whenever it ends."""
        low, high = self._restart
        delay = low
        while not self.stopping:
            started = time.monotonic()
            try:
                await worker.start()
            except OSError as exc:
                log.error("worker_start_failed", worker=worker.index,
                          error=exc.strerror or str(exc))
                code = EXIT_STARTUP
            else:
                log.info("worker_started", worker=worker.index, pid=worker.pid,
                         meters=len(worker.meters))
                code = await worker.wait()
            self._changed.set()
            codes[worker.index] = code
            if self.stopping:
                log.info("worker_stopped", worker=worker.index, pid=worker.pid,
                         exit=describe_exit(code))
                return
            if time.monotonic() - started >= STABLE_S:
                delay = low
            worker.state = "restarting"
            worker.restarts += 1
            why = {"reason": "invalid configuration"} if code == EXIT_CONFIG else {}
            log.warning("worker_exited", worker=worker.index, pid=worker.pid,
                        exit=describe_exit(code), restart_in_s=round(delay, 3),
                        restarts=worker.restarts, **why)
            if self.bridge is not None:
                self.bridge.meters_offline(worker.meters)
            await self._pause(delay)
            delay = min(high, delay * 2)

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _signal_workers(self, sig: signal.Signals) -> None:
        for w in self.workers:
            w.send_signal(sig)

    async def _announce_ready(self) -> None:
        """READY=1 to systemd once every worker has reported ready."""
        await self._until(lambda: all(w.ready for w in self.workers))
        log.info("gateway_started", gateway=self.config.gateway.id, workers=self.count,
                 meters=sum(len(w.meters) for w in self.workers))
        self.notifier.ready(self.status_line())

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds (checked whenever a worker is ready or ends)."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    def status_line(self) -> str:
        ready = sum(1 for w in self.workers if w.ready)
        return f"{ready} of {self.count} workers ready; " \
               f"{sum(len(w.meters) for w in self.workers)} meters"

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd; kill a worker whose own pings stopped for a whole watchdog period."""
        period = 2 * interval
        while True:
            now = time.monotonic()
            for w in self.workers:
                if w.running and now - w.last_ping > period:
                    log.error("worker_watchdog_expired", worker=w.index, pid=w.pid,
                              silent_s=round(now - w.last_ping, 1))
                    w.send_signal(signal.SIGKILL)
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    # -- reloads and signals -----------------------------------------------------------------

    async def _reloads(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Forward SIGHUP to every worker (each applies its own share of the file) and take
        the new meter split for routing and ``bridge/info``; READY once the workers are."""
        self.notifier.reloading()
        asked = time.monotonic()
        try:
            loaded = load_config(self._file.source)
        except ConfigError as exc:
            log.error("config_reload_refused", source=self._file.source,
                      problems=list(exc.problems))
            loaded = None
        self._signal_workers(signal.SIGHUP)
        if loaded is not None:
            running = replace(loaded, shard=self._file.shard, worker=None)
            meters = shard.worker_meters(running, self.count)
            for w in self.workers:
                w.meters = tuple(m.id for m in meters[w.index])
            self._units = self._unit_map(meters)
            if self.bridge is not None:
                self.bridge.set_workers([w.meters for w in self.workers])
            log.info("config_reloaded", source=self._file.source, workers=self.count)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RELOAD_WAIT_S):
                await self._until(lambda: not any(w.running and w.ready_at < asked
                                                   for w in self.workers))
        self.notifier.ready(self.status_line())
        return loaded is not None

    def request_stop(self) -> None:
        self._stop.set()

    def _signal(self, sig: signal.Signals) -> None:
        """The first SIGTERM/SIGINT stops the workers in order, the second forces them."""
        self._signals += 1
        if self._signals == 1:
            log.info("signal_received", signal=sig.name)
            self.request_stop()
            return
        if self._forced:
            return
        self._forced = True
        log.warning("shutdown_forced", signal=sig.name)
        self._signal_workers(signal.SIGTERM)  # their second: they force their stop
        asyncio.get_running_loop().call_later(FORCE_EXIT_S, self._kill_and_exit)

    def _kill_and_exit(self) -> None:
        self._signal_workers(signal.SIGKILL)
        os._exit(EXIT_CRASH)

    def _catch_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        caught = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._signal, sig)
            except (ValueError, RuntimeError, NotImplementedError):
                continue
            caught.append(sig)
        try:
            loop.add_signal_handler(signal.SIGHUP, self._reload_wanted.set)
            caught.append(signal.SIGHUP)
        except (ValueError, RuntimeError, NotImplementedError):
            pass
        return caught


class _View:
    """The supervisor as its HTTP endpoint sees it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._s = supervisor

    @property
    def config(self) -> Config:
        return self._s.config

    @property
    def stopping(self) -> bool:
        return self._s.stopping

    def workers(self) -> Sequence[WorkerStatus]:
        return [w.view() for w in self._s.workers]

    def outputs(self) -> Sequence[OutputStatus]:
        s, cfg = self._s, self._s.config
        rows = []
        if s.bridge is not None:
            up = s.bridge.connected
            rows.append(OutputStatus("MQTT", f"{cfg.mqtt.host}:{cfg.mqtt.port} "
                                     f"({s.bridge.topics.bridge_state})", up,
                                     "connected" if up else "not connected"))
        if s.relay is not None:
            up = s.relay.listening
            rows.append(OutputStatus("Modbus TCP", f"{cfg.modbus.host}:{s.relay.port} "
                                     f"(relayed to {s.count} workers)", up,
                                     "listening" if up else "not listening"))
        return rows

    @property
    def mqtt(self) -> MqttStats | None:
        return None if self._s.bridge is None else self._s.bridge.stats

    @property
    def relay(self) -> RelayCounters | None:
        relay = self._s.relay
        if relay is None:
            return None
        st = relay.stats
        return RelayCounters(st.relayed, st.target_failed, st.unanswered, st.connections)


def main(config: Config) -> int:
    """``egauge-gateway run`` with ``gateway.workers`` above 1."""
    return asyncio.run(Supervisor(config).run())

