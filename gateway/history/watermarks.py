"""``history.json``: the watermark of every meter (everything up to it is on the broker) and
the ranges beyond it that are on the broker too (the live seconds after a gap that is still
being filled), so that a restart neither loses nor repeats them.

The file is replaced atomically (:func:`gateway.support.write_json`). Writes may come from a
worker thread (the backfill's checkpoints, so that an fsync never stalls the event loop) and
from the loop itself (at stop, on a crash); each carries the generation of the snapshot it
writes, and a write older than the one already on disk is skipped, so the newest watermarks
always win whatever order the writes finish in.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.support import read_json, write_json

STATE_FILE = "history.json"
VERSION = 1
MAX_RANGES = 100  # covered ranges beyond a watermark kept per meter (more: sent again)


@dataclass(frozen=True, slots=True)
class Mark:
    """One meter: everything up to ``until`` is on the broker, and so are the ``ranges``
    beyond it (the live seconds after a gap still being filled)."""

    until: int
    ranges: tuple[tuple[int, int], ...] = ()


Marks = dict[str, Mark]


class WatermarkFile:
    """The watermarks in ``state_dir/history.json``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._lock = threading.Lock()
        self._generation = 0  # of the newest snapshot handed out
        self._written = 0  # generation on disk
        self._saved: Marks | None = None  # as last written
        self.writes = 0  # files written (for status pages and tests)

    def read(self) -> Marks:
        """The watermarks of the last run ({} when there is no file); OSError, ValueError,
        KeyError, TypeError or AttributeError when the file is unreadable."""
        data = read_json(self.path)
        if data is None:
            return {}
        saved = {str(m): Mark(int(v["published_until"]),
                              tuple((int(a), int(b)) for a, b in v.get("published_ranges", ())))
                 for m, v in data["meters"].items()}
        self._saved = dict(saved)
        return saved

    def snapshot(self, marks: Marks) -> tuple[int, Marks] | None:
        """A numbered copy of ``marks`` to write, or ``None`` when the file holds them."""
        if marks == self._saved and self.path.exists():
            return None
        self._generation += 1
        return self._generation, dict(marks)

    def write(self, generation: int, marks: Marks) -> bool:
        """Write one snapshot (any thread); False when a newer one is already on disk.
        OSError when it cannot be written (the old file stays)."""
        with self._lock:
            if generation <= self._written:
                return False
            data = {"version": VERSION, "meters": {m: _entry(mark) for m, mark in marks.items()}}
            write_json(self.path, data, compact=True)  # rewritten every second
            self._written = generation
            self._saved = marks
            self.writes += 1
            return True


def _entry(mark: Mark) -> dict[str, object]:
    entry: dict[str, object] = {"published_until": mark.until}
    if mark.ranges:
        entry["published_ranges"] = [list(r) for r in mark.ranges[:MAX_RANGES]]
    return entry
