"""``reg`` and ``view`` selection of ``/register`` (egauge-webapi §2.1).

``reg`` ranges are ``all``, ``none``, ``n`` and ``n0:n1`` (by idx); a leading ``+`` adds to
the current set, ``-`` removes from it, anything else defines it; further ranges chain with
``+``/``-``. ``view=name`` (or ``=name``) selects the registers named ``name.*``, ``+name``
adds them, ``-name`` removes them. Parameters apply left to right, starting from all.
An idx that names no register selects nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gateway.simulator.registers import SimRegister
from gateway.simulator.reply import QueryError

_TERM = re.compile(r"([+-]?)(all|none|\d+(?::\d+)?)")


def _term_set(term: str, all_idx: frozenset[int]) -> set[int]:
    if term == "all":
        return set(all_idx)
    if term == "none":
        return set()
    low, _, high = term.partition(":")
    lo, hi = int(low), int(high or low)
    if lo > hi:
        raise QueryError(f"Invalid register range {term!r}.")
    return {i for i in all_idx if lo <= i <= hi}


def _apply_reg(current: set[int], expr: str, all_idx: frozenset[int]) -> set[int]:
    pos = 0
    result = current
    for m in _TERM.finditer(expr):
        if m.start() != pos or (pos and not m[1]):
            break
        sign, term = m[1], m[2]
        chosen = _term_set(term, all_idx)
        if sign == "+":
            result = result | chosen
        elif sign == "-":
            result = result - chosen
        else:
            result = chosen
        pos = m.end()
    if pos != len(expr) or not expr:
        raise QueryError(f"Invalid register selection: reg={expr!r}.")
    return result


def _apply_view(current: set[int], expr: str, registers: Sequence[SimRegister]) -> set[int]:
    sign, name = (expr[0], expr[1:]) if expr[:1] in ("=", "+", "-") else ("=", expr)
    if not name:
        raise QueryError(f"Invalid view selection: view={expr!r}.")
    chosen = {r.idx for r in registers if r.name.partition(".")[0] == name and "." in r.name}
    if sign == "+":
        return current | chosen
    if sign == "-":
        return current - chosen
    return chosen


def select(registers: Sequence[SimRegister],
           params: Sequence[tuple[str, str]]) -> list[SimRegister]:
    """The registers chosen by the ``reg``/``view`` parameters, in increasing idx order."""
    all_idx = frozenset(r.idx for r in registers)
    chosen = set(all_idx)
    for key, value in params:
        if key == "reg":
            chosen = _apply_reg(chosen, value, all_idx)
        elif key == "view":
            chosen = _apply_view(chosen, value, registers)
    return sorted((r for r in registers if r.idx in chosen), key=lambda r: r.idx)
