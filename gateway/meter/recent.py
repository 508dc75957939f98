"""The newest stored 1-second rows a meter sent, kept a few seconds for a second reader.

When a busy loop polls a meter a little late, the poll skips one of the meter's seconds, and
two parts need that second's row: the energy counters (to count it) and the history backfill
(to publish it). Each poll reads the newest row *and the one before it*, and
:class:`RecentRows` keeps those rows -- and the rows of 1-second database requests -- as one
dense run (one row every second from its first to its last, at most :data:`MAX_ROWS` of the
newest) for :data:`KEEP_S` seconds. A request that lies inside the run is answered as the
meter would answer it (its rows from ``start`` to ``end``, the newest ``max_rows`` of them),
so a skipped second costs no request at all, and a longer gap one, not one for each part --
otherwise the busier the loop, the more seconds it skips, and the more it asks the meters.

Only dense runs are kept, so an answer is never missing a row the meter holds; stored rows
do not change once written, except over a reboot or a database reset -- a new login (the
client logs in again after either) forgets them. Each row is kept as a tuple of its values
and its names, the names one tuple for all the rows of a register set (a dict of a row's
11-22 values cost 500-900 bytes more); an answer's dicts are rebuilt from them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Final

Row = tuple[float, dict[str, int]]
_Packed = tuple[float, tuple[str, ...], tuple[int, ...]]  # time, names, values

KEEP_S: Final = 5.0
MAX_ROWS: Final = 8  # a few seconds of rows: some 3 kB a meter


class RecentRows:
    """One meter's newest dense run of 1-second rows (``remember``, ``lookup``)."""

    def __init__(self, *, keep_s: float = KEEP_S, max_rows: int = MAX_ROWS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._keep_s = keep_s
        self._max_rows = max_rows
        self._clock = clock
        self._rows: list[_Packed] = []
        self._at = -math.inf
        self._generation = -1
        self.hits = 0

    def remember(self, rows: Sequence[Row], generation: int) -> None:
        """Keep ``rows`` (oldest first, a reply to a 1-second request) when they are dense;
        joined to the run kept when they touch it."""
        if not _dense(rows):
            return
        kept = self._rows
        packed = self._packed(rows)
        fresh = (generation == self._generation and self._clock() - self._at <= self._keep_s)
        if fresh and kept and rows[0][0] <= kept[-1][0] + 1 and rows[-1][0] >= kept[0][0] - 1:
            by_ts = {row[0]: row for row in kept}  # touching or overlapping: one dense run
            by_ts.update((row[0], row) for row in packed)
            run = [by_ts[ts] for ts in sorted(by_ts)]
        else:
            run = packed
        self._rows = run[-self._max_rows:]
        self._at = self._clock()
        self._generation = generation

    def lookup(self, start: float, end: float, max_rows: int | None, generation: int
               ) -> list[Row] | None:
        """The rows of ``time=start:1:end`` (the newest ``max_rows``) when the run kept holds
        all of them; None otherwise."""
        rows = self._rows
        if (not rows or generation != self._generation
                or self._clock() - self._at > self._keep_s
                or start < rows[0][0] or end > rows[-1][0] or end < start):
            return None
        found = [row for row in rows if start <= row[0] <= end]
        if max_rows is not None:
            found = found[-max_rows:] if max_rows > 0 else []
        self.hits += 1
        return [(ts, dict(zip(names, values, strict=True))) for ts, names, values in found]

    def _packed(self, rows: Sequence[Row]) -> list[_Packed]:
        """``rows`` as tuples; equal names share the tuple of the newest row kept."""
        names = self._rows[-1][1] if self._rows else ()
        out = []
        for ts, raws in rows:
            keys = tuple(raws)
            if keys != names:
                names = keys
            out.append((ts, names, tuple(raws.values())))
        return out


def _dense(rows: Sequence[Row]) -> bool:
    """One row every second, oldest first, at whole seconds."""
    if not rows or rows[0][0] != math.floor(rows[0][0]):
        return False
    return all(b[0] - a[0] == 1 for a, b in itertools.pairwise(rows))
