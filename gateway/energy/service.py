"""Energy: the import/export counters of every meter, as a hub stage, a hub sink and a service.

- The **stage** (:meth:`Energy.stage`) sees every reading before the outputs do: it advances
  the meter's counters (:class:`~gateway.energy.tally.MeterTally`) and hands on the reading
  with each counted register's :class:`~gateway.model.EnergyCount` -- the counters *as last
  written to disk*, so that nothing published is ever ahead of what a restart resumes from
  (after a crash the counters never go backwards). Their ``through`` says which second they
  include.
- The **service** fills each meter's gaps from its database (one task per meter, behind live
  polling, at most :data:`MAX_CONCURRENT` requests across the fleet, fewer while live polls
  lapse: :attr:`Energy.budget`, :mod:`gateway.core.budget`) and writes the counters
  atomically to ``energy.json`` (:mod:`gateway.energy.store`) after a chunk and otherwise
  when they moved, at most once per :func:`persist_interval` (1 s up to 100 meters, longer
  for larger fleets); ``flush`` writes them at once (a crash, a forced stop).
- :meth:`Energy.annotate` gives the rows of the history backfill the import and export of
  the seconds each row covers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

import structlog

from gateway.config import EnergyConfig, MeterConfig
from gateway.core import Budget
from gateway.energy.counter import limit, split
from gateway.energy.selection import counted
from gateway.energy.store import STATE_FILE, Entry, entry_of, load, newest, render, restore, write
from gateway.energy.tally import EnergyLane, MeterTally, TallyStats
from gateway.history import HistoryRow
from gateway.meter import type_code
from gateway.model import (
    Availability,
    EnergyCount,
    Identity,
    Reading,
    RegisterInfo,
    RegisterValue,
)

log = structlog.get_logger(__name__)

PERSIST_S: Final = 1.0  # the shortest interval between two writes of the counters
PERSIST_METERS: Final = 100  # the interval grows by a second per this many meters ...
MAX_PERSIST_S: Final = 10.0  # ... up to this
MAX_CONCURRENT: Final = 8
MAX_ROWS: Final = 600


def persist_interval(meters: int) -> float:
    """Seconds between two writes of the counters for ``meters`` meters. Each write renders
    every meter's counters (about 20 µs a meter, on the event loop), so the interval grows
    with the fleet -- 1 s up to 100 meters, a second more per 100 meters, at most 10 s --
    and the writes cost about the same small share of a core at any size. The outputs show
    the counters as last written: they trail the newest reading by about this interval."""
    return min(MAX_PERSIST_S, max(PERSIST_S, meters / PERSIST_METERS))


class Energy:
    """The counters of every meter of this instance (``start``, ``serve``, ``stop``,
    ``flush``; :meth:`stage` for the hub, and a hub sink)."""

    name = "energy"

    def __init__(
        self,
        meters: Sequence[MeterConfig],
        lanes: Callable[[str], EnergyLane | None],
        state_dir: str | Path,
        *,
        shared_dir: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_rows: int = MAX_ROWS,
        max_concurrent: int = MAX_CONCURRENT,
        persist_s: float | None = None,
    ) -> None:
        """``state_dir``: this instance's directory; ``shared_dir`` (the configured
        ``state_dir``) is where the files of the other shard instances are looked for, so a
        meter that moved to this instance keeps its counters. ``persist_s``: the interval
        between writes (default: :func:`persist_interval` of the meters served)."""
        self.path = Path(state_dir) / STATE_FILE
        self._shared = Path(shared_dir) if shared_dir is not None else None
        self._lanes = lanes
        self._clock = clock
        self._max_rows = max_rows
        self._fixed_persist_s = persist_s
        self._persist_s = persist_s or persist_interval(len(meters))
        self._tallies = {m.id: self._tally(m.id, m.energy) for m in meters}
        self._kept: dict[str, Entry] = {}  # counters of meters not served now
        self._loaded: dict[str, Entry] = {}
        self._committed: dict[str, dict[str, EnergyCount]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self.budget = Budget(max_concurrent)  # fewer while live polling lapses
        self._save_wanted = asyncio.Event()
        self._writing = False

    def _tally(self, meter: str, cfg: EnergyConfig) -> MeterTally:
        return MeterTally(meter, cfg, self._max_rows)

    @property
    def persist_s(self) -> float:
        """The interval between two writes of the counters now."""
        return self._persist_s

    def tally(self, meter: str) -> MeterTally | None:
        """One meter's counters and gap state (for status pages and tests)."""
        return self._tallies.get(meter)

    def stats(self, meter: str) -> TallyStats | None:
        tally = self._tallies.get(meter)
        return None if tally is None else tally.stats

    def counts(self, meter: str) -> Mapping[str, EnergyCount]:
        """The counters of ``meter`` as last written (what the outputs get)."""
        return dict(self._committed.get(meter, {}))

    # -- the stage ------------------------------------------------------------------------

    def stage(self, reading: Reading) -> Reading:
        """Advance the counters by ``reading``; the reading with their (saved) values."""
        tally = self._tallies.get(reading.meter)
        if tally is None:
            return reading
        # while the budget is used up a woken task could only give up: the polls after it
        # frees up wake it (a wake-up of every meter with a gap at every poll costs CPU)
        tally.take(reading, wake=not self.budget.locked())
        counts = self._committed.get(reading.meter)
        if not counts:
            return reading
        cfg = tally.cfg
        values = tuple(  # built directly: dataclasses.replace costs 4 µs a value (the hot path)
            RegisterValue(v.name, v.type_code, v.unit, v.rate, v.cumulative, v.cumulative_unit,
                          v.raw, counts[v.name])
            if v.name in counts and counted(cfg, v.name, v.type_code) else v
            for v in reading.registers)
        return Reading(reading.meter, reading.ts, values, reading.local, reading.received,
                       reading.row)

    def annotate(self, meter: str, rows: Sequence[HistoryRow]) -> list[HistoryRow]:
        """History rows with the import and export of the seconds each covers, for the
        counted registers (a row whose change is implausible carries nothing)."""
        tally = self._tallies.get(meter)
        if tally is None:
            return list(rows)
        out = []
        for row in rows:
            if row.dt is None or row.dt < 1:
                out.append(row)
                continue
            splits: dict[str, tuple[int, int]] = {}
            for v in row.values:
                delta = row.changes.get(v.name)
                if delta is None or not counted(tally.cfg, v.name, v.type_code):
                    continue
                counter = tally.counters.get(v.name)
                peak = counter.peak if counter is not None else 0
                splits[v.name] = split(delta) if abs(delta) <= limit(row.dt, peak) else (0, 0)
            out.append(replace(row, split=splits) if splits else row)
        return out

    # -- the service ----------------------------------------------------------------------

    async def start(self) -> None:
        """Read the counters of the last run (a damaged file stops the start)."""
        self._loaded = load(self.path)
        for meter, tally in self._tallies.items():
            entry = self._entry_for(meter)
            if entry is not None:
                restore(tally, entry)
        self._kept = {m: e for m, e in self._loaded.items() if m not in self._tallies}
        for meter, tally in self._tallies.items():
            self._commit(meter, tally)

    def _entry_for(self, meter: str) -> Entry | None:
        """The saved counters of ``meter``: this process's, or -- in a sharded fleet or
        with worker processes -- those of the instance or worker it was served by that
        counted furthest (a meter moves when ``shard.count`` or ``gateway.workers`` changes)."""
        found = [self._loaded[meter]] if meter in self._loaded else []
        if self._shared is not None:
            files = [self._shared / STATE_FILE,
                     *sorted(self._shared.glob(f"instance-*/{STATE_FILE}")),
                     *sorted(self._shared.glob(f"worker-*/{STATE_FILE}")),
                     *sorted(self._shared.glob(f"instance-*/worker-*/{STATE_FILE}"))]
            for path in files:
                if path == self.path or not path.is_file():
                    continue
                try:
                    other = load(path).get(meter)
                except Exception as exc:  # another instance's file: not ours to judge
                    log.warning("energy_state_unreadable", path=str(path), error=repr(exc))
                    continue
                if other is not None:
                    found.append(other)
        return newest(found)

    async def serve(self) -> None:
        """One gap-filling task per meter, and the writes of the counters."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for meter in self._tallies:
                self._spawn(meter)
            last = -math.inf
            while True:
                try:
                    async with asyncio.timeout(self._persist_s):
                        await self._save_wanted.wait()
                except TimeoutError:
                    pass
                self._save_wanted.clear()
                # at most one write per interval, however many chunks came in: each write
                # renders every meter's counters, and at a fleet's scale one per chunk fed
                # itself (the busier the loop, the more skipped seconds, the more chunks)
                delay = last + self._persist_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                last = time.monotonic()
                await self.save()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self.flush()

    def prepare_meters(self, meters: Sequence[MeterConfig]) -> Callable[[], None]:
        """The switch to a reloaded meter set: kept meters keep their counters (and take
        their new ``energy`` section), removed ones are kept in the file, new ones start
        from the file or afresh."""
        wanted = {m.id: m for m in meters}

        def switch() -> None:
            for meter in [m for m in self._tallies if m not in wanted]:
                self._kept[meter] = entry_of(self._tallies.pop(meter))
                self._committed.pop(meter, None)
                task = self._tasks.pop(meter, None)
                if task is not None:
                    task.cancel()
            for meter, cfg in wanted.items():
                tally = self._tallies.get(meter)
                if tally is not None:
                    tally.cfg = cfg.energy
                    continue
                tally = self._tallies[meter] = self._tally(meter, cfg.energy)
                entry = self._kept.pop(meter, None)
                if entry is not None:
                    restore(tally, entry)
                    self._commit(meter, tally)
                if self._group is not None:
                    self._spawn(meter)
            self._persist_s = self._fixed_persist_s or persist_interval(len(self._tallies))

        return switch

    def _spawn(self, meter: str) -> None:
        assert self._group is not None
        run = self._tallies[meter].run(self._lanes, self._clock, self.budget,
                                       self._save_wanted.set)
        self._tasks[meter] = self._group.create_task(run, name=f"energy:{meter}")

    async def save(self) -> None:
        """Write the counters when they moved (in a thread); only then do the outputs get
        them. A failure is logged and retried with the next save."""
        if self._writing or not any(t.changed for t in self._tallies.values()):
            return
        text = render(self._tallies.values(), self._kept)
        snapshot = {m: self._counts(t) for m, t in self._tallies.items()}
        for tally in self._tallies.values():
            tally.changed = False
        self._writing = True
        try:
            await asyncio.to_thread(write, self.path, text)
        except OSError as exc:
            for tally in self._tallies.values():
                tally.changed = True
            log.error("energy_state_write_failed", path=str(self.path),
                      error=exc.strerror or str(exc))
            return
        finally:
            self._writing = False
        self._committed.update(snapshot)

    def flush(self) -> None:
        """Write the counters now, synchronously (at stop, on a crash)."""
        try:
            write(self.path, render(self._tallies.values(), self._kept))
        except OSError as exc:
            log.error("energy_state_write_failed", path=str(self.path),
                      error=exc.strerror or str(exc))

    def _commit(self, meter: str, tally: MeterTally) -> None:
        self._committed[meter] = self._counts(tally)

    @staticmethod
    def _counts(tally: MeterTally) -> dict[str, EnergyCount]:
        out = {}
        for name, c in tally.counters.items():
            tc = type_code(tally.types.get(name, ""))
            out[name] = EnergyCount(c.imported, c.exported, c.through, tc.cumulative_factor,
                                    tc.cumulative_unit)
        return out

    # -- the sink -------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        pass

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        pass

    def on_reading(self, reading: Reading) -> None:
        pass  # the stage counted it

    def on_availability(self, availability: Availability) -> None:
        tally = self._tallies.get(availability.meter)
        if tally is None:
            return
        if tally.online and not availability.online:
            tally.need_epoch = True  # a reboot may have moved it: read it before filling
        tally.online = availability.online
        if availability.online:
            tally.wake.set()

