"""The meter's database levels (egauge-webapi §2.6): which rows exist at a given moment.

Level 0 holds 1-second rows for the last ``fine_history_s`` seconds and is volatile (a reboot
empties it); coarser levels hold minute, quarter-hour and day rows back to the database's
creation. A requested time rounds to the nearest stored row below it (or above it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Level:
    interval_s: int
    row_count: int
    volatile: bool = False


def default_levels(fine_history_s: int) -> tuple[Level, ...]:
    return (
        Level(1, max(1, fine_history_s), volatile=True),
        Level(60, 527040),
        Level(900, 350640),
        Level(86400, 21914),
    )


@dataclass(frozen=True, slots=True)
class Span:
    """The rows one level holds right now: ``oldest`` .. ``head`` every ``interval_s``."""

    interval_s: int
    oldest: int
    head: int

    def floor(self, t: float) -> int | None:
        row = min(self.head, math.floor(t / self.interval_s) * self.interval_s)
        return row if row >= self.oldest else None

    def ceil(self, t: float) -> int | None:
        row = max(self.oldest, math.ceil(t / self.interval_s) * self.interval_s)
        return row if row <= self.head else None


class Database:
    """The rows available at ``now`` for a database created at ``created`` whose volatile
    level has been filling since ``volatile_since`` (the last boot)."""

    def __init__(self, levels: tuple[Level, ...], created: int, volatile_since: int,
                 now: int) -> None:
        self.levels = levels
        spans = []
        for level in levels:
            iv = level.interval_s
            head = now // iv * iv
            first = max(created, volatile_since) if level.volatile else created
            oldest = max(head - (level.row_count - 1) * iv, -(-first // iv) * iv)
            if oldest <= head:
                spans.append(Span(iv, oldest, head))
        self.spans = tuple(spans)
        self.now = now
        self.oldest = min((s.oldest for s in self.spans), default=now)

    def row_at(self, t: float, round_up: bool = False) -> int | None:
        """The stored row for time ``t``: the newest at or before it (``round_up``: the
        oldest at or after it); None when there is none."""
        if round_up:
            ups = [r for s in self.spans if (r := s.ceil(t)) is not None]
            return min(ups) if ups else None
        downs = [r for s in self.spans if (r := s.floor(t)) is not None]
        return max(downs) if downs else None

    def levels_json(self) -> list[dict[str, object]]:
        """``/sys/db`` ``level[]`` entries (``head`` is null for a level with no rows)."""
        heads = {s.interval_s: str(s.head) for s in self.spans}
        return [{"head": heads.get(lv.interval_s), "interval": lv.interval_s * 1000,
                 "row-count": lv.row_count, "volatile": lv.volatile} for lv in self.levels]
