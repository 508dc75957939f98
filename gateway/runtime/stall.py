"""The loop watchdog: when the event loop stops turning, the process ends, so that systemd,
Docker (``restart: unless-stopped``) or Kubernetes start it again.

Everything the gateway does runs on one event loop; code that blocks it (a CPU-bound loop, a
blocking call) stops every poll, every Modbus answer and every signal handler -- even SIGTERM
is then only seen by the kernel. :class:`LoopWatchdog` keeps a heartbeat on the loop (a timer
callback every ``beat_s``) and watches it from a thread of its own. When the heartbeat is
``limit_s`` late, the loop has not turned for that long: the watchdog logs
``event_loop_stalled`` with the stack of the loop's thread (where it is stuck) and then runs its
action -- by default :func:`end_process`: exit code 1 at once, without the ordered stop that
a blocked loop cannot run. Should the log line itself not get out (a blocked stderr), the
action runs anyway after :data:`LOG_GRACE_S`.

This is independent of systemd's watchdog (:mod:`gateway.runtime.notify`), which pings only
while the pollers make progress and keeps working as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog

from gateway.errors import EXIT_CRASH

log = structlog.get_logger(__name__)

LOG_GRACE_S: Final = 5.0  # the longest wait for the stall's log line before acting anyway
MAX_BEAT_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Stall:
    """What the watchdog saw: how long the loop has not turned, and where it is stuck."""

    stalled_s: float
    limit_s: float
    thread: str
    stack: tuple[str, ...]  # the loop thread's frames, outermost first: "file:line in f: code"


def end_process(stall: Stall) -> None:
    """The default action: flush the log streams and exit with code 1, at once."""
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(EXIT_CRASH)


class LoopWatchdog:
    """Watches the running loop from a thread; ``start`` and ``stop`` run in the loop."""

    def __init__(self, limit_s: float, action: Callable[[Stall], None] = end_process, *,
                 beat_s: float | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.limit_s = limit_s
        self.beat_s = beat_s if beat_s is not None else min(MAX_BEAT_S, limit_s / 4)
        self._action = action
        self._clock = clock
        self._due = 0.0  # when the next heartbeat should run
        self._beat_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._acted = threading.Lock()
        self.stall: Stall | None = None  # set when it fired

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No more heartbeats, no more watching (a clean stop; safe to call twice)."""
        self._stopped.set()
        if self._beat_handle is not None:
            self._beat_handle.cancel()
            self._beat_handle = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * self.beat_s + 1)

    def _beat(self) -> None:
        if self._stopped.is_set() or self._loop is None:
            return
        self._due = self._clock() + self.beat_s
        self._beat_handle = self._loop.call_later(self.beat_s, self._beat)

    def _watch(self) -> None:
        while not self._stopped.wait(self.beat_s):
            late = self._clock() - self._due
            if late > self.limit_s:
                self._fire(late)
                return

    def _fire(self, late: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        stack = tuple(f"{f.filename}:{f.lineno} in {f.name}: {f.line or ''}".rstrip()
                      for f in traceback.extract_stack(frame)) if frame is not None else ()
        thread = next((t.name for t in threading.enumerate() if t.ident == self._loop_thread),
                      str(self._loop_thread))
        stall = self.stall = Stall(round(late, 3), self.limit_s, thread, stack)
        guard = threading.Timer(LOG_GRACE_S, self._act, (stall,))
        guard.daemon = True
        guard.start()
        with contextlib.suppress(Exception):  # nothing left to tell it to: act all the same
            log.critical("event_loop_stalled", stalled_s=stall.stalled_s,
                         limit_s=stall.limit_s, thread=stall.thread, stack=list(stall.stack))
        guard.cancel()
        self._act(stall)

    def _act(self, stall: Stall) -> None:
        if self._acted.acquire(blocking=False):  # once, whether the guard or the log was first
            self._action(stall)
