"""Gap-free history: after any gap, the missing rows come from the meter's own database.

:class:`History` is a hub sink and a service. For each meter it keeps a
:class:`~gateway.history.coverage.Coverage` of what the broker has taken: the output reports every
live state the broker acknowledged, and every acknowledged history message fills the rows it
carried. A gap -- the gateway was stopped, the broker was down, the meter did not answer, a
state was dropped -- is a distance between covered times longer than ``history.step_s``.
One :class:`~gateway.history.backfill.Backfill` task per meter fills the oldest gap, behind live
polling, and publishes the rows on ``<base>/<meter>/history`` (QoS 1, not retained), each
with the cumulative values and the average rate since the stored row before it, in the
units of the state payload.

The watermark of each meter (everything up to it is on the broker) is written to
``history.json`` in ``gateway.state_dir`` (:mod:`gateway.history.watermarks`): after every
backfill request whose rows the broker took -- the backfill waits for that write before its
next request -- at most every :data:`PERSIST_S` while only live states move it, and at stop.
The writes run in a worker thread, one at a time; the checkpoints of many meters that come
in while one runs share the next write, so a fleet-wide backfill costs one write at a time,
not one per meter. A restart resumes right after the watermark. Delivery is at least once:
after a crash the rows of one backfill request (``history.max_rows``) and about
:data:`PERSIST_S` of live seconds may be published again; subscribers deduplicate by ``ts``.

A broker acknowledges a message before it has saved it: one that dies (Mosquitto saves every
``autosave_interval``) loses what it took since its last save, although the gateway holds its
acknowledgement. So after every lost broker connection the coverage of every meter goes back to
what it was ``history.replay_s`` before the loss (snapshots of the watermarks, kept about every
half second), and the seconds since then are published again as history once the broker is
back. A backfill request in flight across the rewind does not move the watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog

from gateway.config import HistoryConfig
from gateway.core import Budget
from gateway.history.backfill import (
    ACK_TIMEOUT_S,
    MAX_CONCURRENT,
    Annotate,
    Backfill,
    HistoryOutput,
    HistorySource,
    Lane,
)
from gateway.history.coverage import Coverage
from gateway.history.watermarks import STATE_FILE, Mark, Marks, WatermarkFile
from gateway.model import Availability, Identity, Reading, RegisterInfo
from gateway.support import LogThrottle

__all__ = ["STATE_FILE", "History", "HistoryOutput", "HistorySource", "Lane"]

log = structlog.get_logger(__name__)

PERSIST_S = 1.0
SNAPSHOT_S = 0.5  # the watermarks kept for a replay after a lost connection, at most this often


class History:
    """The gap tracker and backfill of every meter (a hub sink with ``start``, ``serve``
    and ``stop``)."""

    def __init__(
        self,
        cfg: HistoryConfig,
        meters: Iterable[str],
        output: HistoryOutput,
        lanes: Callable[[str], Lane | None],
        state_dir: str | Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        max_concurrent: int = MAX_CONCURRENT,
        annotate: Annotate | None = None,
    ) -> None:
        """``annotate`` adds to the rows what other parts know of them (the energy
        counters' import and export of each row's seconds) before they are published."""
        self.cfg = cfg
        self._annotate = annotate
        self._file = WatermarkFile(state_dir)
        self.path = self._file.path
        self._output = output
        self._lanes = lanes
        self._clock = clock
        self._ack_timeout_s = ack_timeout_s
        self._meters = {m: self._backfill(m, None) for m in meters}
        self._kept: Marks = {}  # watermarks of meters not tracked now
        self._wanted = 0  # checkpoints asked for
        self._done = 0  # checkpoints whose write has finished
        self._wake = asyncio.Event()  # a checkpoint is wanted
        self._written = asyncio.Condition()
        self._notes = LogThrottle(log)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        # at most this many meters read history at once, so that backfill after a fleet-wide
        # gap (a broker outage) never crowds out the live polls of a large fleet; fewer while
        # live polling lapses (gateway.core.budget)
        self.budget = Budget(max_concurrent)
        # (clock, watermarks) of the last history.replay_s and a bit, oldest first
        self._past: deque[tuple[float, Marks]] = deque()
        self._session = (False, 0)  # (connected, connects) as the last turn saw them
        self.replays = 0  # lost connections after which coverage went back

    def _backfill(self, meter: str, mark: Mark | None) -> Backfill:
        return Backfill(meter, self.cfg, self._coverage(mark))

    def _coverage(self, mark: Mark | None) -> Coverage:
        if mark is None:
            return Coverage(self.cfg.step_s)
        return Coverage(self.cfg.step_s, mark.until, mark.ranges)

    def backfill(self, meter: str) -> Backfill | None:
        """The backfill state of one meter (for status pages and tests)."""
        return self._meters.get(meter)

    def watermark(self, meter: str) -> int | None:
        """Up to which meter time everything of ``meter`` is on the broker."""
        state = self._meters.get(meter)
        return None if state is None else state.coverage.until

    @property
    def state_writes(self) -> int:
        """How often ``history.json`` was written."""
        return self._file.writes

    @property
    def published_rows(self) -> int:
        return sum(b.published_rows for b in self._meters.values())

    @property
    def given_up_s(self) -> int:
        return sum(b.given_up_s for b in self._meters.values())

    def status(self) -> dict[str, Any]:
        """Per meter: the watermark and the oldest gap still open (for status pages)."""
        out: dict[str, Any] = {}
        for meter, state in self._meters.items():
            gap = state.coverage.gap()
            out[meter] = {"published_until": state.coverage.until,
                          "gap": None if gap is None else list(gap)}
        return out

    # -- service --------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the watermarks of the last run and listen for acknowledged states."""
        try:
            saved = self._file.read()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("history_state_unreadable", path=str(self.path), error=repr(exc))
            saved = {}
        for meter, mark in saved.items():
            if meter in self._meters:
                self._meters[meter] = self._backfill(meter, mark)
            else:
                self._kept[meter] = mark
        self._past.append((self._clock(), self._marks()))
        self._output.on_state_confirmed(self._confirmed)

    async def serve(self) -> None:
        """One backfill task per meter, and the writer of the watermarks: a checkpoint
        asked for, or every PERSIST_S."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for meter in self._meters:
                self._spawn(meter)
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PERSIST_S):
                        await self._wake.wait()
                self._wake.clear()
                wanted = self._wanted
                marks = self._marks()
                if self.cfg.replay_s:
                    marks = self._keep(marks)
                snapshot = self._file.snapshot(marks)
                if snapshot is not None:
                    await self._write_in_thread(*snapshot)
                self._done = wanted
                async with self._written:
                    self._written.notify_all()

    def _keep(self, marks: Marks) -> Marks:
        """Remember ``marks``; after a lost connection, go back to those of ``replay_s``
        before it and return the watermarks as they are then."""
        now = self._clock()
        past = self._past
        connected, connects = self._output.connected, self._output.connects
        was_connected, seen = self._session
        self._session = (connected, connects)
        if was_connected and (not connected or connects != seen):
            # lost since the last turn, at which it was still up: that turn less replay_s
            # (``start`` put the first snapshot in)
            before = past[-1][0] - self.cfg.replay_s
            self._rewind(next((m for t, m in reversed(past) if t <= before), past[0][1]))
            marks = self._marks()
            past.clear()
        if not past or now - past[-1][0] >= SNAPSHOT_S:
            past.append((now, marks))
        horizon = now - self.cfg.replay_s - 2 * PERSIST_S
        while len(past) > 1 and past[1][0] <= horizon:
            past.popleft()
        return marks

    def _rewind(self, marks: Marks) -> None:
        """Forget what each meter confirmed since ``marks`` (it is published again)."""
        for meter, state in self._meters.items():
            mark = marks.get(meter)
            if mark is None:
                continue  # first confirmed within the window: kept
            state.coverage = self._coverage(mark)
            state.epoch += 1
        self.replays += 1
        log.info("history_replay", meters=len(self._meters), replay_s=self.cfg.replay_s)

    async def checkpoint(self) -> None:
        """Return once the watermarks as they are now have been written (or the write
        failed, which is logged). Without the writer running (not serving), write now."""
        if self._group is None:
            self.save()
            return
        self._wanted += 1
        target = self._wanted
        self._wake.set()
        async with self._written:
            await self._written.wait_for(lambda: self._done >= target)

    async def _write_in_thread(self, generation: int, marks: Marks) -> None:
        try:
            await asyncio.to_thread(self._file.write, generation, marks)
        except OSError as exc:
            self._notes.emit("warning", "history_state_write_failed", path=str(self.path),
                             error=repr(exc))

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._group = None  # checkpoints from here on write at once
        self.save()

    def set_meters(self, meters: Iterable[str]) -> None:
        """Track these meters from now on (a configuration reload)."""
        wanted = tuple(meters)
        for meter in [m for m in self._meters if m not in wanted]:
            mark = _mark(self._meters.pop(meter).coverage)
            if mark is not None:
                self._kept[meter] = mark
            task = self._tasks.pop(meter, None)
            if task is not None:
                task.cancel()
        for meter in wanted:
            if meter not in self._meters:
                self._meters[meter] = self._backfill(meter, self._kept.pop(meter, None))
                if self._group is not None:
                    self._spawn(meter)

    def save(self) -> None:
        """Write the watermarks now, in this thread, when they moved (at stop, on a crash);
        a failure is logged and retried later."""
        snapshot = self._file.snapshot(self._marks())
        if snapshot is None:
            return
        try:
            self._file.write(*snapshot)
        except OSError as exc:
            log.warning("history_state_write_failed", path=str(self.path), error=repr(exc))

    def _marks(self) -> Marks:
        marks = dict(self._kept)
        for meter, state in self._meters.items():
            mark = _mark(state.coverage)
            if mark is not None:
                marks[meter] = mark
        return marks

    def _spawn(self, meter: str) -> None:
        assert self._group is not None
        run = self._meters[meter].run(self._output, self._lanes, self._clock,
                                      self._ack_timeout_s, self.budget, self.checkpoint,
                                      self._annotate)
        self._tasks[meter] = self._group.create_task(run, name=f"history:{meter}")

    # -- sink -----------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        pass

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        pass

    def on_reading(self, reading: Reading) -> None:
        state = self._meters.get(reading.meter)
        if state is None:
            return
        columns = state.columns
        if len(columns) != len(reading.registers) or any(
                c[0] != v.name or c[1] != v.type_code
                for c, v in zip(columns, reading.registers, strict=True)):
            state.columns = tuple((v.name, v.type_code) for v in reading.registers)
        # wake the backfill only when it has work and may start it: a wake-up of every
        # meter's task at every poll costs CPU
        if state.coverage.gap() is not None and not self.budget.locked():
            state.polled.set()

    def on_availability(self, availability: Availability) -> None:
        state = self._meters.get(availability.meter)
        if state is not None:
            state.online = availability.online

    def _confirmed(self, meter: str, ts: float) -> None:
        state = self._meters.get(meter)
        if state is not None and math.isfinite(ts):
            state.coverage.confirm(math.floor(ts))


def _mark(coverage: Coverage) -> Mark | None:
    return None if coverage.until is None else Mark(coverage.until, coverage.intervals)
