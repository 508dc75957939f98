"""The catch-up budget: how many reads of the meters' own databases (the history backfill,
the energy counters' gap reads) may run at once across the fleet, set by how live polling
fares.

Catch-up reads run behind live polling, in the slot before each meter's next poll. After a
fleet-wide gap (a broker outage, a restart) hundreds of meters have gaps at once. On a
machine, a network or a meter near its limit those reads slow the live polls down; polls then
fail or run late, each failed poll opens another gap to read back, meters go offline and
come back (and read their identity again), and the recovery feeds on itself.

So a :class:`Budget` works like TCP's congestion window (additive increase, multiplicative
decrease). :class:`Pace` looks at live polling once a second. A second is *strained* when
the polls of online meters lapsed (failed, or skipped because one ran late) more than once
per :data:`LAPSES_PER` meters, or when the event loop woke more than :data:`LAG_S` late
(the longest delay :class:`gateway.core.lag.LoopLag` saw in that second). A
strained second halves every budget, down to one read at a time (a gap always closes, if
slowly). A calm second adds one, up to the budget's limit.

The services only check :meth:`Budget.locked` before a read, and skip it when the budget is
used up (they try again after the next poll). They never wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Final

import structlog

from gateway.core.lag import LoopLag

log = structlog.get_logger(__name__)

PERIOD_S: Final = 1.0  # how often Pace looks
LAG_S: Final = 0.2  # the loop woke Pace this much late: strained
LAPSES_PER: Final = 100  # lapsed polls per second allowed per this many meters (at least 0)


class Budget:
    """At most ``allowed`` catch-up reads at once (an async context manager around each);
    ``allowed`` moves between one and ``limit`` (a limit of 0 allows none)."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"a budget's limit must not be negative, not {limit}")
        self.limit = limit
        self.allowed = limit
        self.in_use = 0
        self.cuts = 0  # strained seconds that halved it

    def locked(self) -> bool:
        """True when no read may start now."""
        return self.in_use >= self.allowed

    async def __aenter__(self) -> Budget:
        self.in_use += 1
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.in_use -= 1

    def strained(self) -> None:
        """Halve what is allowed (not below one)."""
        if self.allowed > 1:
            self.allowed = max(1, self.allowed // 2)
            self.cuts += 1

    def eased(self) -> None:
        """Allow one more (up to the limit)."""
        self.allowed = min(self.limit, self.allowed + 1)


Lapses = Callable[[], tuple[int, int]]  # (lapsed polls so far, meters polled)


class Pace:
    """Sets ``budgets`` once every ``period_s`` from ``lapses`` (the fleet's count of lapsed
    polls of online meters so far, and how many meters it polls) and how late ``lag`` found
    the loop meanwhile."""

    def __init__(self, budgets: Sequence[Budget], lapses: Lapses, lag: LoopLag, *,
                 period_s: float = PERIOD_S, lag_s: float = LAG_S,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.budgets = tuple(budgets)
        self._lapses = lapses
        self._lag = lag
        self._period_s = period_s
        self._lag_s = lag_s
        self._sleep = sleep
        self._seen = lapses()[0]
        self.strained = False  # how the last turn judged its second

    def turn(self, lag_s: float) -> bool:
        """Judge the second just past (the loop woke at worst ``lag_s`` late); True:
        strained."""
        total, meters = self._lapses()
        new = max(0, total - self._seen)  # a reload may start counters anew
        self._seen = total
        strained = new > meters // LAPSES_PER or lag_s > self._lag_s
        if strained != self.strained:
            log.info("catchup_strained" if strained else "catchup_calm", lapsed_polls=new,
                     loop_lag_ms=round(lag_s * 1000), allowed=[b.allowed for b in self.budgets])
        self.strained = strained
        for budget in self.budgets:
            if strained:
                budget.strained()
            else:
                budget.eased()
        return strained

    async def run(self) -> None:
        """Turn every period until cancelled."""
        while True:
            await self._sleep(self._period_s)
            self.turn(self._lag.take_worst())
