"""The ``time`` parameter of ``/register`` (egauge-webapi §2.2).

Points: a Unix timestamp, ``now``, ``epoch``, or ``soy soq sob som sow sod soh soQ soM sos``
(bare: of ``now``; or applied to a point in parentheses), followed by offsets such as
``+1d-1h`` (units y q b m w d h Q M; none means seconds; months clamp to the month's end).
Ranges: ``from:step:to`` (generated from ``to`` backwards), ``from:to`` (step 1 s),
``from::to`` (just the two ends); a leading ``+`` rounds to the next stored row instead of
the previous one. ``b`` (billing interval) counts as one month.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from gateway.simulator.reply import QueryError

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_OFFSET = re.compile(r"([+-])(\d+(?:\.\d+)?)([yqbmwdhQM]?)")
_STEP = re.compile(r"^(\d+(?:\.\d+)?)([yqbmwdhQM]?)$")
_FUNC = re.compile(r"so[yqbmwdhQMs]")
_MONTHS = {"y": 12, "q": 3, "b": 1, "m": 1}
_DAYS = {"w": 7, "d": 1}
_SECONDS = {"h": 3600.0, "Q": 900.0, "M": 60.0, "": 1.0}
_LATEST = 253402300800.0  # 10000-01-01


@dataclass(frozen=True, slots=True)
class TimeContext:
    """What time points are relative to: the newest row, the epoch, the meter's zone."""

    now: int
    epoch: int
    tz: dt.tzinfo
    billing_start_day: int = 1

    def local(self, t: float) -> dt.datetime:
        try:
            return dt.datetime.fromtimestamp(t, self.tz)
        except (ValueError, OverflowError, OSError) as exc:
            raise QueryError("Time out of range.") from exc

    def add(self, t: float, amount: float, unit: str) -> float:
        if unit in _MONTHS:
            return self.add_months(t, int(amount) * _MONTHS[unit])
        if unit in _DAYS:
            try:
                d = self.local(t) + dt.timedelta(days=int(amount) * _DAYS[unit])
            except OverflowError as exc:
                raise QueryError("Time out of range.") from exc
            return d.timestamp()
        return t + amount * _SECONDS[unit]

    def add_months(self, t: float, months: int) -> float:
        d = self.local(t)
        year, month0 = divmod(d.year * 12 + d.month - 1 + months, 12)
        if not dt.MINYEAR < year < dt.MAXYEAR:
            raise QueryError("Time out of range.")
        day = min(d.day, calendar.monthrange(year, month0 + 1)[1])
        return d.replace(year=year, month=month0 + 1, day=day).timestamp()

    def start_of(self, func: str, t: float) -> float:
        d = self.local(t)
        unit = func[2]
        if unit == "s":
            return float(int(t // 1))
        if unit in "MQh":
            minute = {"M": d.minute, "Q": d.minute - d.minute % 15, "h": 0}[unit]
            return d.replace(minute=minute, second=0, microsecond=0).timestamp()
        midnight = d.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == "d":
            return midnight.timestamp()
        if unit == "w":
            return (midnight - dt.timedelta(days=d.weekday())).timestamp()
        if unit == "b":
            return self._start_of_billing(midnight)
        month = {"m": d.month, "q": d.month - (d.month - 1) % 3, "y": 1}[unit]
        return midnight.replace(month=month, day=1).timestamp()

    def _start_of_billing(self, midnight: dt.datetime) -> float:
        def on_day(year: int, month: int) -> dt.datetime:
            last = calendar.monthrange(year, month)[1]
            return midnight.replace(year=year, month=month, day=min(self.billing_start_day, last))

        start = on_day(midnight.year, midnight.month)
        if start > midnight:
            year, month = (midnight.year, midnight.month - 1) if midnight.month > 1 else (
                midnight.year - 1, 12)
            start = on_day(year, month)
        return start.timestamp()


@dataclass(frozen=True, slots=True)
class TimeRange:
    """One comma-separated item of ``time``: timestamps from ``end`` back to ``start``."""

    end: float
    start: float
    round_up: bool = False
    step_s: float = 0.0  # fixed step (0: a single point or a calendar step)
    step_unit: str = ""  # calendar step unit (months or days) when step_s is 0
    step_amount: int = 0
    pair: bool = False  # from::to -- just the two ends

    def at(self, k: int, ctx: TimeContext) -> float | None:
        """The k-th timestamp (k = 0 is ``end``), or None past ``start``."""
        if self.pair:
            t = (self.end, self.start)[k] if k < 2 else None
        elif self.step_s:
            t = self.end - k * self.step_s
        elif self.step_unit:
            t = ctx.add(self.end, -k * self.step_amount, self.step_unit)
        else:
            t = self.end if k == 0 else None
        if t is None or t < self.start - 1e-9:
            return None
        return t

    @property
    def nominal_delta(self) -> float:
        """The row spacing to report for a range that yields a single row."""
        if self.step_s:
            return self.step_s
        if self.step_unit:
            return self.step_amount * (86400.0 if self.step_unit in _DAYS else 86400.0 * 30)
        return 1.0


class _PointParser:
    def __init__(self, text: str, ctx: TimeContext) -> None:
        self.text, self.pos, self.ctx = text, 0, ctx

    def fail(self) -> QueryError:
        return QueryError(f"Invalid time expression: {self.text!r}.")

    def point(self) -> float:
        t = self.base()
        while (m := _OFFSET.match(self.text, self.pos)) is not None:
            self.pos = m.end()
            amount = float(m[2]) * (-1 if m[1] == "-" else 1)
            t = self.ctx.add(t, amount, m[3])
        return t

    def base(self) -> float:
        text, pos = self.text, self.pos
        if (m := _NUMBER.match(text, pos)) is not None:
            self.pos = m.end()
            return float(m[0])
        for word, value in (("now", self.ctx.now), ("epoch", self.ctx.epoch)):
            if text.startswith(word, pos):
                self.pos += len(word)
                return float(value)
        if (m := _FUNC.match(text, pos)) is not None:
            self.pos = m.end()
            arg: float = float(self.ctx.now)
            if text.startswith("(", self.pos):
                self.pos += 1
                arg = self.point()
                if not text.startswith(")", self.pos):
                    raise self.fail()
                self.pos += 1
            return self.ctx.start_of(m[0], arg)
        raise self.fail()

    def whole(self) -> float:
        t = self.point()
        if self.pos != len(self.text):
            raise self.fail()
        return t


def parse_point(text: str, ctx: TimeContext) -> float:
    t = _PointParser(text, ctx).whole()
    if not 0 <= t < _LATEST:
        raise QueryError(f"Time out of range: {text!r}.")
    return t


def parse_time(param: str, ctx: TimeContext) -> list[TimeRange]:
    """Parse a whole ``time`` parameter into its ranges, in request order."""
    ranges: list[TimeRange] = []
    for item in param.split(","):
        up = item.startswith("+")
        parts = (item[1:] if up else item).split(":")
        if len(parts) == 1:
            t = parse_point(parts[0], ctx)
            ranges.append(TimeRange(t, t, up))
            continue
        if len(parts) == 2:
            parts = [parts[0], "1", parts[1]]
        if len(parts) != 3:
            raise QueryError(f"Invalid time range: {item!r}.")
        start, end = parse_point(parts[0], ctx), parse_point(parts[2], ctx)
        if start > end:
            raise QueryError(f"Invalid time range (from after to): {item!r}.")
        if parts[1] == "":
            ranges.append(TimeRange(end, start, up, pair=True))
            continue
        m = _STEP.match(parts[1])
        if m is None or not 0 < float(m[1]) < _LATEST:
            raise QueryError(f"Invalid time step: {parts[1]!r}.")
        amount, unit = float(m[1]), m[2]
        if unit in _MONTHS or unit in _DAYS:
            if amount != int(amount):
                raise QueryError(f"Invalid time step: {parts[1]!r}.")
            months_or_days = "m" if unit in _MONTHS else "d"
            count = int(amount) * (_MONTHS.get(unit) or _DAYS[unit])
            ranges.append(TimeRange(end, start, up, step_unit=months_or_days, step_amount=count))
        else:
            ranges.append(TimeRange(end, start, up, step_s=amount * _SECONDS[unit]))
    return ranges
