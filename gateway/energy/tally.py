"""One meter's counters: advanced by its live readings, their gaps filled from its database.

:meth:`MeterTally.take` sees every reading (synchronously, before the outputs do). A counted
register whose stored row is the second right after the last one counted advances at once;
any other distance -- polling slower than 1 s, a skipped second, the gateway, the broker or
the meter away -- is a gap: the newest live second becomes the *target* and
:meth:`MeterTally.fill_once` (a task, behind live polling) reads the missing rows from the
meter's database, oldest first, through the meter's lane and only in the time left before
the next poll is due (as the history backfill does). Rows beyond the meter's 1-second level
come from its coarser levels: each such step is counted by its sign and reported
(``energy_coarse_rows``).

Windows: the meter answers a ``time=A:1:B&max-rows=R`` request from ``B`` backwards, so a
reply cut at ``R`` rows has lost its *oldest* rows. A window therefore spans at most ``R``
seconds -- unless the last reply was sparse (coarser rows), when the next spans ``R`` times
that reply's row spacing; a reply of ``R`` rows that does not reach back to ``A`` is thrown
away and asked again in a window of ``R`` seconds. So every row is seen, and the history of
a year of minute rows (``energy.origin: meter``) takes a few hundred requests.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog

from gateway.config import EnergyConfig
from gateway.core import Budget
from gateway.energy.counter import Counter, Step
from gateway.energy.selection import counted
from gateway.errors import MeterReportedError, MeterTimeout
from gateway.meter import type_code
from gateway.model import Reading
from gateway.support import Wake

log = structlog.get_logger(__name__)

MIN_SLOT_S: Final = 0.05  # a slot shorter than this before the next poll is left alone
MAX_PAUSE_S: Final = 300.0  # the longest wait after failed requests
MAX_WINDOW_S: Final = 366 * 86_400  # the longest window, whatever the rows' spacing


class EnergySource(Protocol):
    """What the counters need of a meter client."""

    async def history(
        self, start: float, step: float, end: float, max_rows: int | None = None
    ) -> list[tuple[float, dict[str, int]]]: ...

    async def get_config(self, path: str) -> tuple[Any, str | None]: ...


@dataclass(frozen=True, slots=True)
class EnergyLane:
    """Where one meter's requests go: its client, the lane it shares with the poller and the
    command router, and when the next poll is due (monotonic clock)."""

    source: EnergySource
    lock: asyncio.Lock
    next_poll: Callable[[], float | None]


@dataclass(slots=True)
class TallyStats:
    """What one meter's counters went through since the start (for ``/metrics``)."""

    fine_steps: int = 0
    coarse_rows: int = 0
    coarse_seconds: int = 0
    discontinuities: int = 0
    requests: int = 0
    failed_requests: int = 0


@dataclass(slots=True)
class MeterTally:
    """The counters of one meter and the state of their gap filling."""

    meter: str
    cfg: EnergyConfig
    max_rows: int = 600
    counters: dict[str, Counter] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # type code of each counter
    epoch: str | None = None  # the meter's database epoch as last read
    target: int | None = None  # the newest live second seen while a gap is open
    live: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (second, raw)
    cursor: int | None = None  # the database is read up to here (while filling)
    broken: set[str] = field(default_factory=set)  # the next step of these is a discontinuity
    need_epoch: bool = True  # read /config/db/epoch before the next fill
    online: bool = False
    wake: Wake = field(default_factory=Wake)
    window: int = 0  # seconds per request
    rows: int = 0  # rows asked for per request (halved after a timeout)
    max_rows_ok: bool = True  # False: the meter refuses max-rows (firmware before 4.7)
    failures: int = 0
    paused_until: float = 0.0
    stats: TallyStats = field(default_factory=TallyStats)
    changed: bool = False  # counters moved since the last save

    def __post_init__(self) -> None:
        self.rows = self.rows or self.max_rows
        self.window = self.window or self.rows - 1

    # -- live readings ------------------------------------------------------------------

    def take(self, reading: Reading, wake: bool = True) -> None:
        """Advance by one reading; open (or extend) a gap where it does not follow on (and,
        with ``wake``, wake the task that fills it)."""
        second = reading.row if reading.row is not None else math.floor(reading.ts)
        gap = False
        for v in reading.registers:
            if v.raw is None or not counted(self.cfg, v.name, v.type_code):
                continue
            counter = self.counters.get(v.name)
            if counter is None:
                counter = self._begin(v.name, second, v.raw)
                if counter is None:
                    gap = True  # counted from the epoch once it is known
                    continue
            self.types[v.name] = v.type_code
            counter.note_rate(v.rate, type_code(v.type_code).quantum)
            if second <= counter.through:
                continue  # the same row again, or the meter's clock went back
            if second == counter.through + 1 and v.name not in self.broken:
                self._count(v.name, counter, second, v.raw)
                continue
            self.live[v.name] = (second, v.raw)
            self.target = second if self.target is None else max(self.target, second)
            gap = True
        if gap and wake:
            self.wake.set()

    def _begin(self, name: str, second: int, raw: int) -> Counter | None:
        """A new counter: at zero from this second (``origin: zero``), or from the
        database epoch (``origin: meter``; None until the epoch is known)."""
        if self.cfg.origin == "meter":
            if self.epoch is None or not self.epoch.isdigit():
                self.need_epoch = True
                self.target = second if self.target is None else max(self.target, second)
                self.live[name] = (second, raw)
                return None
            counter = Counter(int(self.epoch), 0)  # values are 0 at the epoch
            self.counters[name] = counter
            log.info("energy_counter_started", meter=self.meter, register=name,
                     origin="meter", epoch=int(self.epoch))
            return counter
        counter = self.counters[name] = Counter(second, raw)
        self.changed = True
        log.info("energy_counter_started", meter=self.meter, register=name, origin="zero",
                 second=second)
        return counter

    def _count(self, name: str, counter: Counter, second: int, raw: int) -> Step:
        broken = name in self.broken
        previous = counter.through
        kind, delta = counter.step(second, raw, broken=broken)
        self.broken.discard(name)
        self.changed = True
        if kind is Step.FINE:
            self.stats.fine_steps += 1
        elif kind is Step.DISCONTINUITY:
            self.stats.discontinuities += 1
            log.warning("energy_discontinuity", meter=self.meter, register=name,
                        after=previous, at=second, change=delta, epoch_changed=broken,
                        peak=counter.peak)
        return kind

    # -- the gap -------------------------------------------------------------------------

    def behind(self) -> dict[str, Counter]:
        """The counted registers the open gap still leaves behind the target."""
        target = self.target
        if target is None:
            return {}
        return {n: c for n, c in self.counters.items()
                if c.through < target and counted(self.cfg, n, self.types.get(n, ""))}

    async def run(self, lanes: Callable[[str], EnergyLane | None], clock: Callable[[], float],
                  gate: Budget | None = None,
                  chunk_done: Callable[[], None] = lambda: None) -> None:
        """Fill gaps after the polls that open them, until cancelled."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while await self.fill_once(lanes(self.meter), clock, gate):
                chunk_done()

    async def fill_once(self, lane: EnergyLane | None, clock: Callable[[], float],
                        gate: Budget | None = None) -> bool:
        """One request and what it brings; True when another may follow at once."""
        if not self.online or lane is None or clock() < self.paused_until:
            return False
        if self.need_epoch:
            return await self._read_epoch(lane, clock)
        behind = self.behind()
        if not behind:
            self._close_gap()
            return False
        assert self.target is not None
        low = min(c.through for c in behind.values())
        if self.cursor is None or self.cursor < low:
            self.cursor = low
        if self.cursor >= self.target:
            self._finish(behind)
            return False
        start = self.cursor
        end = min(start + self.window, self.target)
        if gate is not None and gate.locked():
            return False  # the fleet's budget is in use: after the next poll
        if gate is None:
            rows = await self._read(lane, clock, start, end)
        else:
            async with gate:
                rows = await self._read(lane, clock, start, end)
        if rows is None:
            return False
        return self._apply(rows, start, end)

    def _close_gap(self) -> None:
        self.target = None
        self.cursor = None
        self.live.clear()

    def _apply(self, rows: Sequence[tuple[float, Mapping[str, int]]], start: int, end: int
               ) -> bool:
        """Count one reply's rows; adapt the window. False when the reply was thrown away."""
        mine = [(math.floor(ts), raws) for ts, raws in rows if start < ts <= end]
        reached = any(ts <= start for ts, _ in rows)  # the meter went back all the way
        if self.max_rows_ok and len(rows) >= self.rows and not reached:
            self.window = self.rows - 1  # cut: its oldest rows are missing; ask again
            log.debug("energy_window_cut", meter=self.meter, start=start, end=end,
                      rows=len(rows))
            return True
        coarse: dict[int, int] = {}  # row second -> the seconds its step spans
        for name, counter in self.behind().items():
            for second, raws in mine:
                raw = raws.get(name)
                if raw is None or second <= counter.through:
                    continue
                span = second - counter.through
                if self._count(name, counter, second, raw) is Step.COARSE:
                    coarse[second] = max(coarse.get(second, 0), span)
        if coarse:
            seconds = sum(coarse.values())
            self.stats.coarse_rows += len(coarse)
            self.stats.coarse_seconds += seconds
            log.info("energy_coarse_rows", meter=self.meter, rows=len(coarse), seconds=seconds,
                     first=min(coarse), last=max(coarse))
        self.cursor = end
        self.window = self._next_window(mine, start)
        if end >= (self.target or end):
            self._finish(self.behind())
        return True

    def _next_window(self, rows: Sequence[tuple[int, object]], start: int) -> int:
        """Seconds for the next request: ``rows - 1`` while rows come every second, more
        where they came further apart (see the module docstring) -- but never more without
        max-rows, which is what tells a cut reply."""
        if not self.max_rows_ok:
            return self.rows - 1
        seconds = [s for s, _ in rows]
        if not seconds:
            return min(MAX_WINDOW_S, max(self.rows - 1, self.window * 4))
        if len(seconds) == 1:
            return max(self.rows - 1, self.window)
        spacing = min(b - a for a, b in itertools.pairwise(seconds))
        return min(MAX_WINDOW_S, max(self.rows - 1, (self.rows - 1) * spacing))

    def _finish(self, behind: Mapping[str, Counter]) -> None:
        """The database was read up to the target: the last step of a register that has no
        row there comes from the live reading; the gap is closed."""
        target = self.target
        for name, counter in behind.items():
            seen = self.live.get(name)
            if seen is not None and seen[0] == target and counter.through < target:
                self._count(name, counter, target, seen[1])
        if not self.behind():
            self._close_gap()

    # -- requests ------------------------------------------------------------------------

    async def _read(self, lane: EnergyLane, clock: Callable[[], float], start: int, end: int
                    ) -> list[tuple[float, dict[str, int]]] | None:
        """The stored rows of ``start .. end`` within the slot before the next poll; None
        when there is no slot or the request failed (and was logged)."""
        for max_rows in (self.rows, None) if self.max_rows_ok else (None,):
            slot = _slot(lane, clock)
            if slot < MIN_SLOT_S:
                return None
            self.stats.requests += 1
            try:
                async with asyncio.timeout(slot), lane.lock:
                    rows = await lane.source.history(start, 1, end, max_rows)
            except (TimeoutError, MeterTimeout):
                self.rows = max(2, self.rows // 2)
                self.window = min(self.window, self.rows - 1)
                log.info("energy_request_slow", meter=self.meter, slot_s=round(slot, 3),
                         next_rows=self.rows)
                return None
            except MeterReportedError as exc:
                if max_rows is not None:
                    continue  # firmware before 4.7 knows no max-rows
                self._failed(clock, exc)
                return None
            except Exception as exc:  # MeterError, or a client closed at shutdown
                self._failed(clock, exc)
                return None
            if max_rows is None and self.max_rows_ok:
                self.max_rows_ok = False
                log.info("energy_without_max_rows", meter=self.meter)
            self.rows = min(self.max_rows, self.rows * 2)
            self.failures = 0
            return rows
        return None

    async def _read_epoch(self, lane: EnergyLane, clock: Callable[[], float]) -> bool:
        """Read ``/config/db/epoch``: a moved epoch makes the next step of every counter a
        discontinuity. True when filling may go on at once."""
        slot = _slot(lane, clock)
        if slot < MIN_SLOT_S:
            return False
        self.stats.requests += 1
        try:
            async with asyncio.timeout(slot), lane.lock:
                value, _ = await lane.source.get_config("/db/epoch")
        except (TimeoutError, MeterTimeout):
            return False
        except Exception as exc:  # MeterError (no view_settings?), or a client closed
            if self.cfg.origin == "meter":
                self._failed(clock, exc)  # needed: tried again later
                return False
            log.info("energy_epoch_unreadable", meter=self.meter, error=repr(exc))
            self.need_epoch = False
            return True
        epoch = str(value)
        if self.epoch is not None and epoch != self.epoch:
            self.broken = set(self.counters)
            log.warning("energy_epoch_changed", meter=self.meter, old=self.epoch, new=epoch)
        if self.epoch != epoch:
            self.changed = True
        self.epoch = epoch
        self.need_epoch = False
        return True

    def _failed(self, clock: Callable[[], float], exc: BaseException) -> None:
        self.failures += 1
        self.stats.failed_requests += 1
        pause = min(MAX_PAUSE_S, 2.0 ** (self.failures - 1))
        self.paused_until = clock() + pause
        log.info("energy_request_failed", meter=self.meter, error=repr(exc), retry_in_s=pause)


def _slot(lane: EnergyLane, clock: Callable[[], float]) -> float:
    """Seconds a request may take before the next poll is due (less a margin)."""
    due = lane.next_poll()
    if due is None:
        return 0.0
    left = due - clock()
    return left - max(MIN_SLOT_S, 0.1 * left)
