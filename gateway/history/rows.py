"""Stored meter rows as published history: cumulative values and average rates.

The meter stores accumulated raw values (egauge-webapi §2.4); between two stored rows the
average rate is ``(raw1 - raw0) * quantum / (t1 - t0)`` (the difference taken modulo 2^64
as a signed value, so one wrap-around does no harm). Discrete registers (``d``) store the
value itself: their "rate" is that value. Units are those of the state payload
(:mod:`gateway.meter.units`): the rate in the register's unit, the cumulative value in its
cumulative unit (kWh for power).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.meter import type_code
from gateway.model import RegisterValue

_WRAP = 1 << 64
_HALF = 1 << 63


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One stored row: ``ts`` the meter's row time, ``dt`` the seconds since the stored row
    before it (``None`` when the meter had none); each value's ``rate`` is the average over
    ``dt`` and its ``cumulative`` the value at ``ts``. ``changes``: the exact raw change of
    each register over ``dt`` (where known); ``split``: of the registers with energy
    counters, the ``(import, export)`` raw counts of those seconds (added by the energy
    counters' ``annotate`` hook)."""

    ts: int
    dt: int | None
    values: tuple[RegisterValue, ...]
    changes: Mapping[str, int] = field(default_factory=dict)
    split: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def _delta(new: int, old: int) -> int:
    d = (new - old) % _WRAP
    return d - _WRAP if d >= _HALF else d


def history_rows(
    stored: Sequence[tuple[float, dict[str, int]]],
    columns: Sequence[tuple[str, str]],
    after: int,
    through: int,
) -> list[HistoryRow]:
    """The rows of ``stored`` (oldest first) with ``after < ts <= through``, for the
    registers ``columns`` ((name, type code) pairs). The newest stored row at or before
    ``after`` serves as the base of the first row's average."""
    types = [(name, code, type_code(code)) for name, code in columns]
    base: tuple[int, dict[str, int]] | None = None
    out: list[HistoryRow] = []
    for ts_f, raws in stored:
        ts = int(ts_f)
        if ts <= after:
            base = (ts, raws)
            continue
        if ts > through:
            break
        dt = ts - base[0] if base is not None and ts > base[0] else None
        values = []
        changes: dict[str, int] = {}
        for name, code, tc in types:
            raw = raws.get(name)
            if raw is None:
                continue
            if code == "d":
                rate: float | None = raw * tc.quantum
            elif dt is None or base is None or name not in base[1]:
                rate = None
            else:
                delta = changes[name] = _delta(raw, base[1][name])
                rate = delta * tc.quantum / dt
            values.append(RegisterValue(name, code, tc.unit, rate, raw * tc.cumulative_factor,
                                        tc.cumulative_unit, raw))
        out.append(HistoryRow(ts, dt, tuple(values), changes))
        base = (ts, raws)
    return out
