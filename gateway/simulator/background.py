"""A SimServer on its own event loop in a background thread, for synchronous clients
(egauge-python) and for tests whose gateway runs in another loop or process."""

from __future__ import annotations

import asyncio
import ssl as ssl_
import threading
from collections.abc import Sequence
from types import TracebackType

from gateway.simulator.meter import SimMeter
from gateway.simulator.server import SIM_LIMITS, SimServer
from gateway.support import HttpLimits


class ThreadedSimServer:
    """``with ThreadedSimServer([meter]) as sim: sim.url_for(meter)``."""

    def __init__(self, meters: Sequence[SimMeter], host: str = "127.0.0.1", port: int = 0,
                 ssl: ssl_.SSLContext | None = None, *, fleet_addresses: bool = False,
                 control: bool = False, limits: HttpLimits = SIM_LIMITS) -> None:
        self.server = SimServer(meters, host, port, ssl, fleet_addresses=fleet_addresses,
                                control=control, limits=limits)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def url_for(self, meter: SimMeter) -> str:
        return self.server.url_for(meter)

    @property
    def urls(self) -> list[str]:
        return self.server.urls

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="sim-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulator thread did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with self.server:
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # handed to the starting thread
            self._error = exc
            self._ready.set()
            if isinstance(exc, asyncio.CancelledError):
                raise

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ThreadedSimServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
