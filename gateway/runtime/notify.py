"""systemd's notify protocol (``sd_notify``) with the standard library.

:class:`Notifier` sends datagrams to ``$NOTIFY_SOCKET`` (a path, or an abstract socket written
``@name``): ``READY=1`` once the gateway runs, ``RELOADING=1`` and ``READY=1`` around a
configuration reload, ``STOPPING=1`` at shutdown, ``STATUS=...`` lines and ``WATCHDOG=1``.
Without ``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing.

:class:`Watchdog` pings at half of ``$WATCHDOG_USEC`` -- but only while the gateway makes
progress: a poller stuck in one poll for longer than three of its intervals withholds the
pings, so systemd restarts a gateway that hangs instead of one that merely sees dead meters.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger(__name__)


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None
                      ) -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or ``None`` when systemd
    asked for none (or asked another process: ``$WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != (os.getpid() if pid is None else pid)):
        return None
    return int(usec) / 2e6


class Notifier:
    """Sends notify messages to one socket (none: every call is a no-op)."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._failed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        return cls((os.environ if env is None else env).get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send one message of ``KEY=value`` lines; True when it was delivered."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        data = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.setblocking(False)  # a receiver that does not read must not stall the loop
                s.sendto(data, target)
        except OSError as exc:
            if not self._failed:  # one warning, not one per watchdog ping
                log.warning("notify_failed", socket=self.address, error=exc.strerror or str(exc))
            self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str = "reloading the configuration") -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


def _status(text: str) -> tuple[str, ...]:
    return (f"STATUS={text}",) if text else ()


class Watchdog:
    """Pings every ``interval_s`` while ``healthy()`` is true; a withheld ping is logged once
    per stall (``watchdog_withheld``, with what ``healthy`` reported as stuck)."""

    def __init__(self, notifier: Notifier, interval_s: float,
                 stuck: Callable[[], list[str]]) -> None:
        """``stuck`` returns the names of what makes no progress (empty: all well)."""
        self.notifier = notifier
        self.interval_s = interval_s
        self._stuck = stuck
        self.pings = 0
        self.withheld = 0  # ticks without a ping
        self._withheld = False

    def tick(self) -> bool:
        """One check: ping when nothing is stuck. True when a ping went out."""
        stuck = self._stuck()
        if stuck:
            self.withheld += 1
            if not self._withheld:
                log.error("watchdog_withheld", stuck=stuck, interval_s=self.interval_s)
            self._withheld = True
            return False
        if self._withheld:
            log.info("watchdog_resumed")
        self._withheld = False
        if self.notifier.watchdog():
            self.pings += 1
            return True
        return False

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.interval_s)
