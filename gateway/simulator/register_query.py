"""``GET /api/register``: register metadata, rates and rows (egauge-webapi §2).

Rows run youngest first, values are int64 decimal strings in increasing idx order, relative
to the epoch unless ``raw`` is given. One ``time`` item yields one ``ranges`` entry per run of
equally spaced rows, so a range that crosses from 1-second rows into minute rows yields two.
Requested times that round to the same stored row give that row once; a ``ranges`` entry
with a single row reports the requested step (1 for a single time) as its ``delta``.
With ``virtual=formula`` virtual registers carry their formula and no ``rate``; with
``virtual=value`` they carry a rate and appear in the rows like physical ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from gateway.simulator.database import Database
from gateway.simulator.registers import SimRegister
from gateway.simulator.reply import QueryError
from gateway.simulator.selection import select
from gateway.simulator.timespec import TimeContext, TimeRange, parse_time

KNOWN_PARAMS = frozenset(
    {"reg", "view", "rate", "time", "virtual", "delta", "raw", "max-rows", "format"}
)
MAX_ROWS = 100_000
MAX_STEPS = 400_000


class Values(Protocol):
    def rate(self, name: str, t: float) -> float: ...
    def raw(self, name: str, t: float) -> int: ...


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _row_times(tr: TimeRange, db: Database, ctx: TimeContext, budget: int) -> list[int]:
    """The stored rows ``tr`` names, youngest first, each once, at most ``budget``."""
    times: list[int] = []
    k = steps = 0
    while len(times) < budget and (t := tr.at(k, ctx)) is not None:
        steps += 1
        if steps > MAX_STEPS:
            raise QueryError("Too many rows requested.")
        row = db.row_at(t, tr.round_up)
        if row is None:
            if t < db.oldest:
                break  # nothing older is stored
            k += 1
            continue
        if not times or row != times[-1]:
            times.append(row)
        elif tr.round_up and t < db.oldest:
            break  # every older time rounds up to the oldest row again
        if tr.step_s and not tr.round_up and row < t:
            k = max(k + 1, math.floor((tr.end - row) / tr.step_s) + 1)  # skip to the next row
        else:
            k += 1
    return times


def _runs(times: list[int], single_delta: float) -> list[tuple[float, list[int]]]:
    """Split youngest-first row times into runs of equal spacing: ``(delta, times)``."""
    runs: list[tuple[float, list[int]]] = []
    current: list[int] = []
    delta: float | None = None
    for row in times:
        if current:
            gap = current[-1] - row
            if delta is None or gap == delta:
                delta = gap
                current.append(row)
                continue
            runs.append((delta, current))
        current, delta = [row], None
    if current:
        runs.append((single_delta if delta is None else delta, current))
    return runs


def _params(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params:
        if key not in KNOWN_PARAMS:
            raise QueryError(f"Invalid query option: {key}.")
        flat[key] = value
    if flat.get("virtual", "formula") not in ("formula", "value"):
        raise QueryError(f"Invalid virtual option: {flat['virtual']!r}.")
    if flat.get("format", "json") != "json":
        raise QueryError("Only format=json is supported.")
    return flat


def register_reply(values: Values, registers: Sequence[SimRegister],
                   params: Sequence[tuple[str, str]], ts_text: str, ctx: TimeContext,
                   db: Database) -> dict[str, object]:
    """The JSON object ``/register`` answers for ``params`` (in request order)."""
    flat = _params(params)
    mode = flat.get("virtual")
    chosen = [r for r in select(registers, params) if mode is not None or not r.virtual]
    if not chosen:
        return {"ts": ts_text}
    meta: list[dict[str, object]] = []
    for reg in chosen:
        entry: dict[str, object] = {"name": reg.name, "type": reg.type_code, "idx": reg.idx}
        if reg.did is not None:
            entry["did"] = reg.did
        elif mode == "formula":
            entry["formula"] = reg.formula_text()
        if "rate" in flat and (reg.did is not None or mode == "value"):
            entry["rate"] = values.rate(reg.name, ctx.now)
        meta.append(entry)
    reply: dict[str, object] = {"ts": ts_text, "registers": meta}
    if "time" in flat:
        in_rows = [r.name for r in chosen if r.did is not None or mode == "value"]
        reply["ranges"] = _ranges(values, in_rows, flat, ctx, db)
    return reply


def _max_rows(flat: dict[str, str]) -> int:
    text = flat.get("max-rows")
    if text is None:
        return MAX_ROWS
    if not text.isdigit() or int(text) < 1:
        raise QueryError(f"Invalid max-rows: {text!r}.")
    return min(int(text), MAX_ROWS)


def _ranges(values: Values, names: list[str], flat: dict[str, str], ctx: TimeContext,
            db: Database) -> list[dict[str, object]]:
    budget = _max_rows(flat)
    bases = {n: 0 if "raw" in flat else values.raw(n, ctx.epoch) for n in names}
    delta_mode = "delta" in flat
    previous: list[int] | None = None
    out: list[dict[str, object]] = []
    for tr in parse_time(flat["time"], ctx):
        if budget <= 0:
            break
        times = _row_times(tr, db, ctx, budget)
        budget -= len(times)
        for delta, run in _runs(times, tr.nominal_delta):
            rows: list[list[str]] = []
            for t in run:
                row = [values.raw(n, t) - bases[n] for n in names]
                shown = row if previous is None or not delta_mode else [
                    a - b for a, b in zip(row, previous, strict=True)]
                previous = row
                rows.append([str(v) for v in shown])
            out.append({"ts": str(run[0]), "delta": _number(delta), "rows": rows})
    return out
