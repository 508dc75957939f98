"""Register metadata and values from ``/register`` replies (egauge-webapi §2).

Rows hold one int64 decimal string per selected register in increasing ``idx`` order. A
:class:`RegisterPlan` is built once from a reply's ``registers`` list and then turns each
later reply with the same register set into ``RegisterValue`` objects with the per-register
conversion (type code, units, cumulative factor) already looked up: the poll hot path only
checks that name, type and idx are unchanged and converts the numbers.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.meter.fields import INT64_MAX, INT64_MIN, Fields
from gateway.meter.units import type_code
from gateway.model import RegisterInfo, RegisterValue

RegisterKey = tuple[str, str, int]  # name, type code, idx


def parse_infos(f: Fields, entries: Sequence[Any]) -> tuple[RegisterInfo, ...]:
    """The ``registers`` list of a reply as RegisterInfo, sorted by idx."""
    infos = []
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        where = f"registers[{i}]"
        e = f.obj(entry, where)
        idx = f.integer(e.get("idx"), where + ".idx")
        if idx in seen:
            raise f.error(where + ".idx", f"idx {idx} appears twice")
        seen.add(idx)
        did = e.get("did")
        formula = e.get("formula")
        infos.append(
            RegisterInfo(
                # interned: the meters of a fleet share the strings of their register names
                name=sys.intern(f.text(e.get("name"), where + ".name")),
                type_code=sys.intern(f.text(e.get("type"), where + ".type")),
                idx=idx,
                did=None if did is None else f.integer(did, where + ".did"),
                formula=None if formula is None else f.text(formula, where + ".formula"),
            )
        )
    return tuple(sorted(infos, key=lambda info: info.idx))


def register_keys(infos: Sequence[RegisterInfo]) -> tuple[RegisterKey, ...]:
    """What identifies a register set: name, type and idx of each register, by idx."""
    return tuple((i.name, i.type_code, i.idx) for i in sorted(infos, key=lambda i: i.idx))


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    code: str
    idx: int
    pos: int  # position in the reply's ``registers`` list
    unit: str
    cumulative_unit: str
    factor: float


class RegisterPlan:
    """The precomputed conversion for replies whose ``registers`` list looks like one seen."""

    __slots__ = ("_columns", "infos", "keys", "names")

    def __init__(self, f: Fields, entries: Sequence[Any]) -> None:
        self.infos = parse_infos(f, entries)
        position = {f.obj(e, "registers").get("idx"): pos for pos, e in enumerate(entries)}
        columns = []
        for info in self.infos:
            tc = type_code(info.type_code)
            columns.append(
                _Column(
                    info.name, info.type_code, info.idx, position[info.idx],
                    tc.unit, tc.cumulative_unit, tc.cumulative_factor,
                )
            )
        self._columns = tuple(columns)
        self.keys = register_keys(self.infos)
        self.names = tuple(c.name for c in self._columns)  # in the order of the rows' cells

    def matches(self, entries: Sequence[Any]) -> bool:
        """Whether ``entries`` lists the same registers (name, type, idx) at the same places."""
        if len(entries) != len(self._columns):
            return False
        for c in self._columns:
            e = entries[c.pos]
            if (
                type(e) is not dict
                or e.get("idx") != c.idx
                or e.get("name") != c.name
                or e.get("type") != c.code
            ):
                return False
        return True

    def values(
        self, f: Fields, entries: Sequence[Any], row: Any, row_field: str
    ) -> tuple[RegisterValue, ...]:
        """One RegisterValue per register from the rates in ``entries`` and one row."""
        columns = self._columns
        if type(row) is not list or len(row) != len(columns):
            raise f.error(row_field, f"expected an array of {len(columns)} decimal strings")
        out = []
        for c, cell in zip(columns, _raws(f, row, row_field), strict=True):
            rate = entries[c.pos].get("rate")
            if type(rate) is float:
                if rate - rate != 0.0:  # infinite (or NaN): let the check name it
                    f.number(rate, f"registers[{c.pos}].rate")
            elif rate is not None:
                rate = f.number(rate, f"registers[{c.pos}].rate")
            out.append(RegisterValue(c.name, c.code, c.unit, rate, cell * c.factor,
                                     c.cumulative_unit, cell))
        return tuple(out)

    def raws(self, f: Fields, row: Any, row_field: str) -> dict[str, int]:
        """The raw value of each register in one more row of the same reply."""
        columns = self._columns
        if type(row) is not list or len(row) != len(columns):
            raise f.error(row_field, f"expected an array of {len(columns)} decimal strings")
        return dict(zip(self.names, _raws(f, row, row_field), strict=True))


def _raws(f: Fields, row: list[Any], row_field: str) -> list[int]:
    """Each cell of a row as the exact int64 its decimal string spells (the checks name the
    first bad cell)."""
    if all(type(cell) is str for cell in row):
        try:
            raws = list(map(int, row))
        except ValueError:
            pass
        else:
            if raws and min(raws) >= INT64_MIN and max(raws) <= INT64_MAX:
                return raws
    return [f.decimal(cell, f"{row_field}[{j}]") for j, cell in enumerate(row)]


def first_row(f: Fields, reply: dict[str, Any]) -> tuple[float, Any]:
    """The timestamp and the row of the single ``time=now`` range."""
    ranges = f.array(reply.get("ranges"), "ranges")
    if not ranges:
        raise f.error("ranges", "expected one range, got none")
    first = f.obj(ranges[0], "ranges[0]")
    rows = f.array(first.get("rows"), "ranges[0].rows")
    if not rows:
        raise f.error("ranges[0].rows", "expected one row, got none")
    return f.stamp(first.get("ts"), "ranges[0].ts"), rows[0]


def history_rows(f: Fields, reply: dict[str, Any]) -> list[tuple[float, dict[str, int]]]:
    """Every row of every range as ``(ts, {name: raw})``, oldest first."""
    infos = parse_infos(f, f.array(reply.get("registers"), "registers"))
    names = [info.name for info in infos]
    out: list[tuple[float, dict[str, int]]] = []
    for r, entry in enumerate(f.array(reply.get("ranges"), "ranges")):
        where = f"ranges[{r}]"
        rng = f.obj(entry, where)
        ts = f.stamp(rng.get("ts"), where + ".ts")
        delta = f.number(rng.get("delta"), where + ".delta")
        for k, row_value in enumerate(f.array(rng.get("rows"), where + ".rows")):
            row_field = f"{where}.rows[{k}]"
            row = f.array(row_value, row_field)
            if len(row) != len(names):
                raise f.error(row_field, f"expected {len(names)} values, got {len(row)}")
            raws = {n: f.decimal(row[j], f"{row_field}[{j}]") for j, n in enumerate(names)}
            out.append((ts - k * delta, raws))
    out.sort(key=lambda item: item[0])
    return out
