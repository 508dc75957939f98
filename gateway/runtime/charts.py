"""What the status page charts, built from the app's parts: the last capture of each meter
(kept from the command router's answers) and each meter's recent power (from the trend
sink), as :class:`~gateway.observe.Chart` values."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import structlog

from gateway.commands import Outcome
from gateway.observe import Chart, Series

log = structlog.get_logger(__name__)

KEPT_POINTS: Final = 2000  # per channel of a kept capture (the chart thins further)


class LastCaptures:
    """A router outcome listener that keeps the newest successful ``capture`` of each meter
    as a chart (one per meter, thinned: bounded memory)."""

    def __init__(self) -> None:
        self._charts: dict[str, Chart] = {}

    def __call__(self, outcome: Outcome) -> None:
        if outcome.command.action != "capture" or not outcome.succeeded:
            return
        try:
            self._charts[outcome.command.meter] = capture_chart(outcome.response.data)
        except (KeyError, TypeError, ValueError) as exc:  # an answer of another shape
            log.warning("capture_chart_failed", meter=outcome.command.meter, error=repr(exc))

    def chart(self, meter: str) -> Chart | None:
        return self._charts.get(meter)

    def forget(self, keep: Iterable[str]) -> None:
        wanted = set(keep)
        for meter in [m for m in self._charts if m not in wanted]:
            del self._charts[meter]


def capture_chart(data: Mapping[str, Any]) -> Chart:
    """A capture answer (``channels`` with ``t`` in s and ``v``) over milliseconds."""
    series = []
    for channel in data["channels"]:
        points = [(float(t) * 1000.0, float(v))
                  for t, v in zip(channel["t"], channel["v"], strict=True)]
        stride = max(1, math.ceil(len(points) / KEPT_POINTS))
        series.append(Series(str(channel["name"]), str(channel["unit"]),
                             tuple(points[::stride])))
    when = dt.datetime.fromtimestamp(float(data["first_sample"]), dt.UTC)
    samples = sum(len(c["v"]) for c in data["channels"])
    title = (f"Last capture {when:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC, "
             f"{samples} samples")
    trigger = data.get("trigger")
    marker = float(trigger["t"]) * 1000.0 if isinstance(trigger, Mapping) else None
    return Chart(title, "time after the first sample (ms)", tuple(series), marker)


def trend_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
                window_s: float, step_s: float) -> Chart | None:
    """The power trend over minutes before the newest point (None: nothing followed)."""
    if not series:
        return None
    stamps = [t for _, points in series for t, _ in points]
    latest = max(stamps) if stamps else 0.0
    lines = tuple(Series(name, "W", tuple(((t - latest) / 60.0, w) for t, w in points))
                  for name, points in series)
    title = f"Power, last {window_s / 60:g} minutes ({step_s:g} s averages)"
    return Chart(title, "minutes before the latest reading", lines,
                 x_range=(-window_s / 60.0, 0.0))
