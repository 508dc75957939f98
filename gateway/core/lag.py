"""LoopLag: how late the gateway's own event loop runs.

A task sleeps :data:`PERIOD_S` at a time and adds up how much later than asked it woke. On
a loop with time to spare that is well under a millisecond a wake-up; on a saturated loop
(more meters than the core carries, a start of hundreds of meters at once) every wake-up
waits for a whole round of ready callbacks, and so does every request a poll sends.

Two readers:

- a poll that timed out asks :meth:`LoopLag.late_share` what share of its time the loop
  spent late (:class:`gateway.core.Poller`): past :data:`EXCUSE_SHARE` the timeout was the
  gateway's own and is not held against the meter (it does not bring it nearer to offline);
- :class:`gateway.core.Pace` takes the longest wake-up delay of each second
  (:meth:`LoopLag.take_worst`) for its judgement of the catch-up budgets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final

PERIOD_S: Final = 0.1  # how often the task wakes
EXCUSE_SHARE: Final = 0.1  # a timed-out poll with this share of its time late: not the meter's


class LoopLag:
    """The loop's lateness so far (``total_s``: every wake-up delay added up, a running
    sum that only grows) and the longest delay since it was last taken."""

    def __init__(self, *, period_s: float = PERIOD_S,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.period_s = period_s
        self._clock = clock
        self._sleep = sleep
        self.total_s = 0.0
        self._worst = 0.0

    def note(self, lag_s: float) -> None:
        """One wake-up ``lag_s`` late."""
        self.total_s += lag_s
        self._worst = max(self._worst, lag_s)

    def take_worst(self) -> float:
        """The longest wake-up delay since the last call."""
        worst, self._worst = self._worst, 0.0
        return worst

    def late_share(self, total_before: float, seconds: float) -> float:
        """The share of ``seconds`` (the time since ``total_s`` was ``total_before``) that
        the loop was late."""
        return (self.total_s - total_before) / seconds if seconds > 0 else 0.0

    async def run(self) -> None:
        """Measure until cancelled."""
        while True:
            started = self._clock()
            await self._sleep(self.period_s)
            self.note(max(0.0, self._clock() - started - self.period_s))
