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
``history.json`` in ``gateway.state_dir`` (atomically, at most every :data:`PERSIST_S` and at
stop; the periodic write in a worker thread, so that a slow disk's fsync never stalls the
polls), so a restart resumes right after it. Delivery is at least once: after a crash up to
:data:`PERSIST_S` of rows may be published again; subscribers deduplicate by ``ts``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog

from gateway.config import HistoryConfig
from gateway.history.backfill import (
    ACK_TIMEOUT_S,
    MAX_CONCURRENT,
    Backfill,
    HistoryOutput,
    HistorySource,
    Lane,
)
from gateway.history.coverage import Coverage
from gateway.model import Availability, Identity, Reading, RegisterInfo
from gateway.support import read_json, write_json

__all__ = ["STATE_FILE", "History", "HistoryOutput", "HistorySource", "Lane"]

log = structlog.get_logger(__name__)

STATE_FILE = "history.json"
PERSIST_S = 1.0


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
    ) -> None:
        self.cfg = cfg
        self.path = Path(state_dir) / STATE_FILE
        self._output = output
        self._lanes = lanes
        self._clock = clock
        self._ack_timeout_s = ack_timeout_s
        self._meters = {m: self._backfill(m, None) for m in meters}
        self._saved: dict[str, int] = {}  # as last written
        self._kept: dict[str, int] = {}  # watermarks of meters not tracked now
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        # at most this many meters read history at once, so that backfill after a fleet-wide
        # gap (a broker outage) never crowds out the live polls of a large fleet
        self._gate = asyncio.Semaphore(max_concurrent)

    def _backfill(self, meter: str, until: int | None) -> Backfill:
        return Backfill(meter, self.cfg, Coverage(self.cfg.step_s, until))

    def backfill(self, meter: str) -> Backfill | None:
        """The backfill state of one meter (for status pages and tests)."""
        return self._meters.get(meter)

    def watermark(self, meter: str) -> int | None:
        """Up to which meter time everything of ``meter`` is on the broker."""
        state = self._meters.get(meter)
        return None if state is None else state.coverage.until

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
            data = read_json(self.path)
            saved = {str(m): int(v["published_until"]) for m, v in data["meters"].items()} \
                if data is not None else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("history_state_unreadable", path=str(self.path), error=repr(exc))
            saved = {}
        self._saved = dict(saved)
        for meter, until in saved.items():
            if meter in self._meters:
                self._meters[meter] = self._backfill(meter, until)
            else:
                self._kept[meter] = until
        self._output.on_state_confirmed(self._confirmed)

    async def serve(self) -> None:
        """One backfill task per meter, and the periodic write of the watermarks."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for meter in self._meters:
                self._spawn(meter)
            while True:
                await asyncio.sleep(PERSIST_S)
                await self._save_in_thread()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self.save()

    def set_meters(self, meters: Iterable[str]) -> None:
        """Track these meters from now on (a configuration reload)."""
        wanted = tuple(meters)
        for meter in [m for m in self._meters if m not in wanted]:
            until = self._meters.pop(meter).coverage.until
            if until is not None:
                self._kept[meter] = until
            task = self._tasks.pop(meter, None)
            if task is not None:
                task.cancel()
        for meter in wanted:
            if meter not in self._meters:
                self._meters[meter] = self._backfill(meter, self._kept.pop(meter, None))
                if self._group is not None:
                    self._spawn(meter)

    def save(self) -> None:
        """Write the watermarks when they moved; a failure is logged and retried later."""
        marks = self._marks()
        if marks is not None:
            self._write(marks)

    def _marks(self) -> dict[str, int] | None:
        """The watermarks to write, or None when the file already has them."""
        marks = dict(self._kept)
        for meter, state in self._meters.items():
            if state.coverage.until is not None:
                marks[meter] = state.coverage.until
        if marks == self._saved and self.path.exists():
            return None
        return marks

    def _write(self, marks: dict[str, int]) -> None:
        data = {"version": 1, "meters": {m: {"published_until": t} for m, t in marks.items()}}
        try:
            write_json(self.path, data)
        except OSError as exc:
            log.warning("history_state_write_failed", path=str(self.path), error=repr(exc))
            return
        self._saved = marks

    async def _save_in_thread(self) -> None:
        """:meth:`save` with the file written by a worker thread (the marks are taken here,
        on the loop)."""
        marks = self._marks()
        if marks is not None:
            await asyncio.to_thread(self._write, marks)

    def _spawn(self, meter: str) -> None:
        assert self._group is not None
        run = self._meters[meter].run(self._output, self._lanes, self._clock,
                                      self._ack_timeout_s, self._gate)
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
        if state.coverage.gap() is not None:  # wake the backfill only when it has work: a
            state.polled.set()  # wake-up of every meter's task at every poll costs CPU

    def on_availability(self, availability: Availability) -> None:
        state = self._meters.get(availability.meter)
        if state is not None:
            state.online = availability.online

    def _confirmed(self, meter: str, ts: float) -> None:
        state = self._meters.get(meter)
        if state is not None and math.isfinite(ts):
            state.coverage.confirm(math.floor(ts))
