"""POSIX TZ strings (``/config/time/zone``) as a ``datetime.tzinfo``.

Supports ``std offset [dst [offset] [,Mm.w.d[/time],Mm.w.d[/time]]]`` with names written
plainly (``CET``) or quoted (``<+0530>``). Julian-day rules (``Jn``, ``n``) are refused.
"""

from __future__ import annotations

import datetime as dt
import re

_NAME = r"(?:[A-Za-z]{3,}|<[+\-0-9A-Za-z]+>)"
_OFFSET = r"[+-]?\d{1,2}(?::\d{1,2}(?::\d{1,2})?)?"
_RULE = r"M\d{1,2}\.\d\.\d(?:/" + _OFFSET + r")?"
_TZ = re.compile(
    rf"^(?P<std>{_NAME})(?P<stdoff>{_OFFSET})"
    rf"(?:(?P<dst>{_NAME})(?P<dstoff>{_OFFSET})?"
    rf"(?:,(?P<start>{_RULE}),(?P<end>{_RULE}))?)?$"
)
_DEFAULT_RULES = ("M3.2.0", "M11.1.0")


def _seconds(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")]
    parts += [0] * (3 - len(parts))
    return sign * (parts[0] * 3600 + parts[1] * 60 + parts[2])


class PosixTz(dt.tzinfo):
    """A fixed-rule time zone parsed from a POSIX TZ string."""

    def __init__(self, spec: str) -> None:
        m = _TZ.match(spec.strip())
        if m is None:
            raise ValueError(f"unsupported TZ string {spec!r}")
        self.spec = spec
        self._std_name = m["std"].strip("<>")
        self._std = dt.timedelta(seconds=-_seconds(m["stdoff"]))
        self._dst_name = (m["dst"] or "").strip("<>")
        dst_off = m["dstoff"]
        self._dst = (
            dt.timedelta(seconds=-_seconds(dst_off)) if dst_off
            else self._std + dt.timedelta(hours=1)
        )
        start, end = (m["start"], m["end"]) if m["start"] else _DEFAULT_RULES
        self._rules = (self._rule(start), self._rule(end))

    @staticmethod
    def _rule(text: str) -> tuple[int, int, int, int]:
        date, _, at = text.partition("/")
        month, week, day = (int(x) for x in date[1:].split("."))
        if not (1 <= month <= 12 and 1 <= week <= 5 and 0 <= day <= 6):
            raise ValueError(f"bad TZ rule {text!r}")
        return month, week, day, _seconds(at) if at else 7200

    @staticmethod
    def _wall(year: int, rule: tuple[int, int, int, int]) -> dt.datetime:
        month, week, day, at = rule
        first = dt.datetime(year, month, 1)
        delta = (day - (first.isoweekday() % 7)) % 7
        mday = 1 + delta + 7 * (week - 1)
        nxt = dt.datetime(year + month // 12, month % 12 + 1, 1)
        while first.replace(day=1) + dt.timedelta(days=mday - 1) >= nxt:
            mday -= 7
        return first + dt.timedelta(days=mday - 1, seconds=at)

    def _in_dst_local(self, wall: dt.datetime, fold: int = 0) -> bool:
        if not self._dst_name:
            return False
        start = self._wall(wall.year, self._rules[0])
        end = self._wall(wall.year, self._rules[1])
        if fold and end - (self._dst - self._std) <= wall < end:
            return False  # the second pass through the repeated hour
        if start < end:
            return start <= wall < end
        return not end <= wall < start

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        if d is None:
            return self._std
        in_dst = self._in_dst_local(d.replace(tzinfo=None), d.fold)
        return self._dst if in_dst else self._std

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return self.utcoffset(d) - self._std

    def tzname(self, d: dt.datetime | None) -> str:
        return self._dst_name if d is not None and self.dst(d) else self._std_name

    def fromutc(self, d: dt.datetime) -> dt.datetime:
        utc = d.replace(tzinfo=None)
        if not self._dst_name:
            return (utc + self._std).replace(tzinfo=self)
        start = self._wall(utc.year, self._rules[0]) - self._std
        end = self._wall(utc.year, self._rules[1]) - self._dst
        in_dst = start <= utc < end if start < end else not end <= utc < start
        wall = utc + (self._dst if in_dst else self._std)
        repeated = not in_dst and end <= utc < end + (self._dst - self._std)
        return wall.replace(tzinfo=self, fold=1 if repeated else 0)

    def __repr__(self) -> str:
        return f"PosixTz({self.spec!r})"
