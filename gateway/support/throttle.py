"""Log events that a client can trigger at will (a bad frame, a refused connection), at most
once per interval each.

:class:`LogThrottle` logs the first occurrence of an event at once and counts the ones that
follow within ``interval_s``; when the interval is over the count is logged in one line
(``count=N``: the occurrences that line stands for, with the keys of the last of them). So a
flood of bad input costs one log line per event name and interval, never one per packet; the
exact totals belong in counters (``/metrics``). Inside a running event loop the pending
count is logged when its interval ends (a timer of the loop); outside one, with the next
occurrence or :meth:`LogThrottle.flush`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

DEFAULT_INTERVAL_S = 60.0


@dataclass(slots=True)
class _Event:
    level: str
    logged_at: float  # when the last line of this event went out
    pending: int = 0  # occurrences since then, not logged yet
    keys: dict[str, Any] = field(default_factory=dict)  # those of the latest occurrence
    timer: asyncio.TimerHandle | None = None


class LogThrottle:
    """One logger's rate-limited events (one state per event name)."""

    def __init__(self, logger: Any = None, interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger if logger is not None else structlog.get_logger(__name__)
        self.interval_s = interval_s
        self._clock = clock
        self._events: dict[str, _Event] = {}

    def emit(self, level: str, event: str, **keys: Any) -> bool:
        """One occurrence of ``event``; True when it was logged now (not only counted)."""
        now = self._clock()
        state = self._events.get(event)
        if state is None or now - state.logged_at >= self.interval_s:
            count = 1 + (state.pending if state is not None else 0)
            if state is not None and state.timer is not None:
                state.timer.cancel()
            self._events[event] = _Event(level, now)
            self._write(level, event, count, keys)
            return True
        state.pending += 1
        state.level, state.keys = level, keys
        if state.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            delay = max(0.0, state.logged_at + self.interval_s - now)
            state.timer = loop.call_later(delay, self._due, event)
        return False

    def flush(self) -> None:
        """Log every pending count now (a server that closes)."""
        for event in list(self._events):
            self._due(event)

    def _due(self, event: str) -> None:
        state = self._events.get(event)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        if state.pending:
            self._write(state.level, event, state.pending, state.keys)
            state.pending = 0
            state.logged_at = self._clock()

    def _write(self, level: str, event: str, count: int, keys: dict[str, Any]) -> None:
        getattr(self._log, level)(event, **keys, count=count, interval_s=self.interval_s)
