"""The process signals of a running gateway, as uvicorn handles them: the first SIGTERM or
SIGINT asks for the ordered stop, a second one forces it; SIGHUP asks for a reload.

Handlers are installed on the running event loop (only possible in the main thread; elsewhere,
e.g. an app run by a test in another thread, nothing is installed) and removed again when the
app's run ends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

_STOPPING = (signal.SIGTERM, signal.SIGINT)


class Signals:
    """``stop`` on the first SIGTERM/SIGINT, ``force`` on the second, ``reload`` on SIGHUP."""

    def __init__(self, *, stop: Callable[[], None], force: Callable[[], None],
                 reload: Callable[[], None]) -> None:
        self._stop, self._force, self._reload = stop, force, reload
        self.received = 0  # SIGTERM/SIGINT so far
        self._caught: list[signal.Signals] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        handlers: list[tuple[signal.Signals, Callable[[], None]]] = [
            *((sig, lambda sig=sig: self._stopping(sig)) for sig in _STOPPING),
            (signal.SIGHUP, self._reload)]
        for sig, handler in handlers:
            try:
                loop.add_signal_handler(sig, handler)
            except (ValueError, RuntimeError, NotImplementedError):
                continue
            self._caught.append(sig)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._caught:
            loop.remove_signal_handler(sig)
        self._caught.clear()

    def _stopping(self, sig: signal.Signals) -> None:
        self.received += 1
        if self.received == 1:
            log.info("signal_received", signal=sig.name)
            self._stop()
        elif self.received == 2:
            log.warning("shutdown_forced", signal=sig.name)
            self._force()
