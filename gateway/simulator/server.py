"""SimServer: serves simulated meters over HTTP/1.1 (optionally TLS), one listening socket
per meter: consecutive ports from ``port`` (0: any free port each), or with
``fleet_addresses`` one loopback address per meter (``host``, ``host + 1``, ...) on one
common port. A meter that goes down has its socket closed and its connections dropped, so
clients see "connection refused" until it is reopened. HTTP runs on the server's connection
protocol (h11) within ``limits`` (:data:`SIM_LIMITS` by default; ``max_connections`` counts
per meter); :attr:`SimServer.stats` counts for all meters.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import ssl as ssl_
from collections.abc import Sequence
from types import TracebackType

import structlog

from gateway.simulator.connection import Connection, Endpoint
from gateway.simulator.meter import SimMeter
from gateway.support import HttpLimits, HttpSite, HttpStats, LogThrottle

log = structlog.get_logger(__name__)
_REOPEN_ATTEMPTS = 50
PORT_ATTEMPTS = 5  # fleet addresses on an ephemeral port: tries of another one when taken
# a meter's bodies (config writes) may be larger, and its clients keep connections longer
SIM_LIMITS = HttpLimits(max_body_bytes=4 * 1024 * 1024, idle_timeout_s=75.0,
                        max_connections=1024)


class SimServer:
    """``async with SimServer([meter, ...]) as server: server.url_for(meter)``."""

    def __init__(self, meters: Sequence[SimMeter], host: str = "127.0.0.1", port: int = 0,
                 ssl: ssl_.SSLContext | None = None, *, fleet_addresses: bool = False,
                 control: bool = False, limits: HttpLimits = SIM_LIMITS) -> None:
        if len({id(m) for m in meters}) != len(meters) or not meters:
            raise ValueError("SimServer needs one or more distinct meters")
        self.meters = list(meters)
        self.host = host
        self.port = port
        self.ssl = ssl
        self.fleet_addresses = fleet_addresses
        self.control = control
        self.limits = limits
        self.stats = HttpStats()
        self._throttle = LogThrottle(log, limits.log_interval_s)
        self._endpoints: dict[int, Endpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl is not None else "http"

    def url_for(self, meter: SimMeter) -> str:
        ep = self._endpoints[id(meter)]
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        return f"{self.scheme}://{host}:{ep.port}"

    @property
    def urls(self) -> list[str]:
        return [self.url_for(m) for m in self.meters]

    def endpoint(self, meter: SimMeter) -> Endpoint:
        return self._endpoints[id(meter)]

    def held_bytes(self) -> int:
        """Bytes the open connections of every meter hold (received and not yet parsed,
        answered and not yet taken by the client)."""
        return sum(ep.site.held_bytes() for ep in self._endpoints.values())

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                await self._start()
            except OSError as exc:
                # an ephemeral port free on the first address may be taken on another one
                if (exc.errno != errno.EADDRINUSE or not self.fleet_addresses or self.port
                        or attempt == PORT_ATTEMPTS):
                    raise
                self._endpoints.clear()
                continue
            break
        log.info("sim_server_started", meters=len(self.meters), first=self.urls[0])

    async def _start(self) -> None:
        base = ipaddress.ip_address(self.host) if self.fleet_addresses else None
        port = self.port
        try:
            for i, meter in enumerate(self.meters):
                host = str(base + i) if base is not None else self.host
                ep = Endpoint(meter, host, port if self.fleet_addresses or not port
                              else port + i, HttpSite(self.limits, self.stats, self._throttle))
                self._endpoints[id(meter)] = ep
                await self._listen(ep)
                if self.fleet_addresses:
                    port = ep.port
                meter.add_listener(self._on_down)
        except BaseException:
            await self.close()
            raise

    async def _listen(self, ep: Endpoint) -> None:
        tls = self.ssl is not None
        assert self._loop is not None
        ep.server = await self._loop.create_server(
            lambda: Connection(ep, tls=tls, control=self.control), ep.host, ep.port,
            ssl=self.ssl, reuse_address=True)
        ep.port = ep.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for ep in self._endpoints.values():
            ep.meter.remove_listener(self._on_down)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ep in self._endpoints.values():
            self._stop_listening(ep, abort=True)
        for ep in self._endpoints.values():
            if ep.server is not None:
                await ep.server.wait_closed()
                ep.server = None

    def _stop_listening(self, ep: Endpoint, abort: bool = False) -> None:
        if ep.server is not None:
            ep.server.close()
        ep.site.drop_all(abort)

    def _on_down(self, meter: SimMeter, seconds: float) -> None:
        """Called by the meter (from any thread): close its socket for ``seconds``."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._take_down(meter, seconds)
        else:
            done = asyncio.run_coroutine_threadsafe(self._take_down_soon(meter, seconds), loop)
            done.result(timeout=10)

    async def _take_down_soon(self, meter: SimMeter, seconds: float) -> None:
        self._take_down(meter, seconds)

    def _take_down(self, meter: SimMeter, seconds: float) -> None:
        ep = self._endpoints.get(id(meter))
        if ep is None:
            return
        if ep.downtime is not None:
            ep.downtime.cancel()
        self._stop_listening(ep)
        ep.server = None
        task = asyncio.get_running_loop().create_task(
            self._reopen_after(ep, seconds), name=f"sim-downtime-{meter.serial}")
        ep.downtime = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reopen_after(self, ep: Endpoint, seconds: float) -> None:
        await asyncio.sleep(seconds)
        for attempt in range(_REOPEN_ATTEMPTS):
            try:
                await self._listen(ep)
            except OSError as exc:
                log.warning("sim_meter_reopen_failed", meter=ep.meter.serial, port=ep.port,
                            attempt=attempt, error=str(exc))
                await asyncio.sleep(0.2)
                continue
            log.info("sim_meter_up", meter=ep.meter.serial, url=self.url_for(ep.meter))
            return
        log.error("sim_meter_reopen_gave_up", meter=ep.meter.serial, port=ep.port)

