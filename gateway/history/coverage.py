"""Which of one meter's timestamps are known to be on the broker, and the oldest gap.

Times are whole meter seconds (a reading at ``ts`` stands for the stored row ``floor(ts)``).
``until`` is the watermark: everything up to it is published, or was looked for in the
meter's database. Confirmed times beyond it are kept as sorted, disjoint intervals. Two
covered times at most ``step`` apart leave no gap between them; a longer distance is a gap,
and :meth:`Coverage.gap` names the oldest one. Filling it moves the watermark, which then
absorbs every interval it reaches; :meth:`Coverage.give_up` moves it to a look-back limit.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class Coverage:
    """The gap tracker of one meter. ``until`` is ``None`` until the first confirmation
    (a meter never published before has no gap to fill)."""

    __slots__ = ("_ahead", "step", "until")

    def __init__(self, step: int, until: int | None = None,
                 ahead: Iterable[tuple[int, int]] = ()) -> None:
        """``ahead``: covered intervals beyond ``until`` (as :attr:`intervals` gave them
        before a restart); invalid or overlapping ones are dropped or merged."""
        if step < 1:
            raise ValueError("step must be at least 1 s")
        self.step = step
        self.until = until
        self._ahead: list[list[int]] = []  # [first, last] intervals beyond ``until``
        if until is not None:
            for first, last in sorted((a, b) for a, b in ahead if until < a <= b):
                if self._ahead and first - self._ahead[-1][1] <= step:
                    self._ahead[-1][1] = max(self._ahead[-1][1], last)
                else:
                    self._ahead.append([first, last])
            self._absorb()

    @property
    def newest(self) -> int | None:
        """The newest covered time."""
        return self._ahead[-1][1] if self._ahead else self.until

    @property
    def intervals(self) -> tuple[tuple[int, int], ...]:
        """The covered intervals beyond the watermark (for status pages and tests)."""
        return tuple((a, b) for a, b in self._ahead)

    def confirm(self, t: int) -> None:
        """The row at ``t`` is on the broker (a live state, acknowledged)."""
        until = self.until
        if until is None:
            self.until = t
            return
        if t <= until:
            return
        ahead = self._ahead
        if not ahead and t - until <= self.step:
            self.until = t  # the usual case: the next live reading, no gap
            return
        self._insert(t)
        self._absorb()

    def filled(self, through: int) -> None:
        """Every stored row up to ``through`` was published (or the meter has none)."""
        if self.until is None or through > self.until:
            self.until = through
            self._absorb()

    def gap(self) -> tuple[int, int] | None:
        """The oldest gap as ``(after, before)``: the rows strictly between are wanted."""
        if self.until is None or not self._ahead:
            return None
        return self.until, self._ahead[0][0]

    def give_up(self, lookback: int) -> int:
        """Move the watermark to the look-back limit; the number of seconds given up."""
        newest = self.newest
        if self.until is None or newest is None or newest - lookback <= self.until:
            return 0
        lost = newest - lookback - self.until
        self.filled(newest - lookback)
        return lost

    def _insert(self, t: int) -> None:
        ahead, step = self._ahead, self.step
        i = bisect.bisect_left(ahead, [t, t])
        if i > 0 and ahead[i - 1][1] >= t:
            return  # already covered
        if i < len(ahead) and ahead[i][0] == t:
            return
        joins_left = i > 0 and t - ahead[i - 1][1] <= step
        joins_right = i < len(ahead) and ahead[i][0] - t <= step
        if joins_left and joins_right:
            ahead[i - 1][1] = ahead[i][1]
            del ahead[i]
        elif joins_left:
            ahead[i - 1][1] = t
        elif joins_right:
            ahead[i][0] = t
        else:
            ahead.insert(i, [t, t])

    def _absorb(self) -> None:
        until, ahead = self.until, self._ahead
        assert until is not None
        while ahead and ahead[0][0] - until <= self.step:
            until = max(until, ahead.pop(0)[1])
        self.until = until
