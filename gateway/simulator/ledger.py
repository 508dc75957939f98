"""The meter's accumulators: what ``/register`` reports for each register and second.

For a physical register with signal ``s`` and quantum ``q`` the database holds, at whole
second ``T``, ``s.counts(created, T, q)`` quanta (egauge-webapi §2.4). The rate reported for
second ``T`` is the change of that second, ``counts(T) - counts(T-1)``, times the quantum;
so per-second changes of the raw value are exact integers and equal ``round(rate/quantum)``.
Virtual registers are their formula over the physical counts (and rates), exactly.
Discrete registers (``d``) store the value of the second itself.

A cumulative reset (a simulated reboot that loses the counters) subtracts, from its second
``at`` on, a fixed offset per register: the raw values restart from 0, or go back to what
they were ``rewind_s`` seconds before. Rows before ``at`` keep their old values, and rates
are never affected: across ``at`` the raw value jumps while the rate stays physical.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from gateway.simulator.registers import SimRegister
from gateway.simulator.signals import quantised

_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class CumulativeReset:
    """From second ``at`` on, register ``name`` reads ``offsets[name]`` less."""

    at: int
    offsets: dict[str, int]


class Ledger:
    """Rates and raw values of a register set (looked up by name when asked)."""

    def __init__(self, created: int, lookup: Callable[[str], SimRegister]) -> None:
        self.created = created
        self._lookup = lookup
        self.resets: list[CumulativeReset] = []
        self._memo: dict[tuple[str, int], int] = {}  # (name, second) -> count

    def forget(self) -> None:
        """Drop remembered counts (call when the register set changes)."""
        self._memo.clear()

    def _counts(self, reg: SimRegister, second: int) -> int:
        key = (reg.name, second)
        known = self._memo.get(key)
        if known is not None:
            return known
        assert reg.wave is not None
        if reg.type_code == "d":
            value = round(reg.wave.rate(second))
        else:
            value = reg.wave.counts(self.created, second, reg.quantum)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = value
        return value

    def _change(self, reg: SimRegister, second: int) -> int:
        """Quanta accumulated during ``second`` (never touched by resets)."""
        if reg.virtual:
            return sum((1 if s == "+" else -1) * self._change(self._lookup(n), second)
                       for s, n in reg.formula)
        if reg.type_code == "d":
            return self._counts(reg, second)
        return self._counts(reg, second) - self._counts(reg, second - 1)

    def rate(self, name: str, t: float) -> float:
        """The rate reported for the second ``floor(t)`` (virtual: the formula over rates)."""
        reg = self._lookup(name)
        return quantised(self._change(reg, math.floor(t)), reg.quantum)

    def raw(self, name: str, t: float) -> int:
        """The stored accumulator at second ``floor(t)``, counted from database creation."""
        reg = self._lookup(name)
        if reg.virtual:
            return sum((1 if s == "+" else -1) * self.raw(n, t) for s, n in reg.formula)
        second = math.floor(t)
        value = self._counts(reg, second)
        for reset in self.resets:
            if reset.at <= second:
                value -= reset.offsets.get(name, 0)
        return value

    def raw_changes(self, name: str, start: int, end: int) -> list[int]:
        """``raw(t) - raw(t - 1)`` for every second ``t`` in ``start + 1 .. end``: exact
        integers, equal to ``round(rate(t) / quantum)`` except at a cumulative reset."""
        values = [self.raw(name, t) for t in range(start, end + 1)]
        return [b - a for a, b in itertools.pairwise(values)]

    def reset(self, at: int, names: list[str], rewind_s: int | None = None) -> CumulativeReset:
        """Reset the counters of the physical registers ``names`` from second ``at`` on:
        to 0 at second ``at - 1`` (``rewind_s`` None), or back to their values of
        ``rewind_s`` seconds before it."""
        if rewind_s is not None and rewind_s < 1:
            raise ValueError("rewind_s must be at least 1 second")
        offsets = {}
        for name in names:
            reg = self._lookup(name)
            if reg.virtual or reg.type_code == "d":
                continue
            target = 0 if rewind_s is None else self.raw(name, at - 1 - rewind_s)
            offsets[name] = self.raw(name, at - 1) - target
        reset = CumulativeReset(at, offsets)
        self.resets.append(reset)
        self.resets.sort(key=lambda r: r.at)
        return reset
