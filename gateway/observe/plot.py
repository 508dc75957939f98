"""Charts as inline SVG: no scripts, every text escaped.

:func:`svg_chart` draws a :class:`~gateway.observe.view.Chart`: one polyline per series
(``class="trace"``, ``data-series`` its name), a left y axis for the first unit and a right
one for a second unit (e.g. V and A of a capture; further units share the right one), tick
labels at "nice" steps (1, 2 or 5 times a power of ten), the x axis labelled with the
chart's ``x_label`` and each y axis with its unit (``class="axis-label"``), a legend, and a
dashed vertical line at the chart's ``marker``. A trace is thinned to at most
:data:`MAX_POINTS` points (every n-th), so a page stays small whatever a capture holds.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Final

from gateway.observe.view import Chart, Series

MAX_POINTS: Final = 1200
PALETTES: Final = {
    # the capture's colours and the trend's never coincide (the page test tells them apart)
    "capture": ("#d62728", "#1f77b4", "#2ca02c", "#bcbd22", "#e377c2", "#7f7f7f", "#17becf"),
    "trend": ("#9467bd", "#ff7f0e", "#8c564b", "#393b79"),
}
_LEFT, _TOP, _BOTTOM = 64, 40, 44


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values covering ``low`` .. ``high``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    k = 0
    while first + k * step <= high + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    if ticks[-1] < high:
        ticks.append(round(first + k * step, 12))
    return ticks


def tick_text(value: float, ticks: Sequence[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    places = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    text = f"{value:.{places}f}"
    return "0" if text.strip("-0.") == "" else text


def thinned(points: Sequence[tuple[float, float]]) -> Sequence[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    return points[::stride]


def svg_chart(chart: Chart, *, kind: str = "trend", width: int = 720,
              height: int = 240) -> str:
    """The chart as one ``<svg class="chart KIND">`` element."""
    colours = PALETTES.get(kind, PALETTES["trend"])
    units = list(dict.fromkeys(s.unit for s in chart.series))
    right = 64 if len(units) > 1 else 20
    x0, x1, y0, y1 = _LEFT, width - right, _TOP, height - _BOTTOM
    head = (f'<svg class="chart {e(kind)}" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{e(chart.title)}">'
            f'<rect class="area" x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" '
            'fill="#fff" stroke="#999"/>'
            f'<text class="title" x="{x0}" y="16" font-size="13" font-weight="bold">'
            f'{e(chart.title)}</text>')
    points = [p for s in chart.series for p in s.points]
    if not points:
        return (head + f'<text x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle" '
                'fill="#777" font-size="12">no data yet</text></svg>')
    low, high = chart.x_range or (min(p[0] for p in points), max(p[0] for p in points))
    xs = nice_ticks(low, high, 8)
    parts = [head]

    def sx(x: float) -> float:
        return x0 + (x - xs[0]) / ((xs[-1] - xs[0]) or 1.0) * (x1 - x0)

    for x in xs:
        parts.append(f'<line x1="{sx(x):.1f}" y1="{y1}" x2="{sx(x):.1f}" y2="{y1 + 4}" '
                     f'stroke="#999"/><text class="tick" x="{sx(x):.1f}" y="{y1 + 16}" '
                     f'text-anchor="middle" font-size="11">{e(tick_text(x, xs))}</text>')
    parts.append(f'<text class="axis-label" x="{(x0 + x1) / 2}" y="{height - 6}" '
                 f'text-anchor="middle" font-size="12">{e(chart.x_label)}</text>')
    scales: dict[str, list[float]] = {}
    sides = [[units[0]], units[1:]] if len(units) > 1 else [units]
    for side, group in enumerate(sides):
        ys = [p[1] for s in chart.series if s.unit in group for p in s.points]
        ticks = nice_ticks(min(ys), max(ys), 5) if ys else [0.0, 1.0]
        scales.update(dict.fromkeys(group, ticks))
        parts.append(_y_axis(", ".join(group), ticks, side, x0, x1, y0, y1))
    legend_x = x1
    for i, s in reversed(list(enumerate(chart.series))):
        label = f"{s.name} ({s.unit})" if s.unit else s.name
        legend_x -= 14 + 7 * len(label)
        parts.append(f'<rect x="{legend_x}" y="{y0 - 14}" width="10" height="10" '
                     f'fill="{colours[i % len(colours)]}"/><text class="legend" '
                     f'x="{legend_x + 13}" y="{y0 - 5}" font-size="11">{e(label)}</text>')
    for i, s in enumerate(chart.series):
        parts.append(_trace(s, colours[i % len(colours)], sx, scales[s.unit], y0, y1))
    if chart.marker is not None and xs[0] <= chart.marker <= xs[-1]:
        parts.append(f'<line class="marker" x1="{sx(chart.marker):.1f}" y1="{y0}" '
                     f'x2="{sx(chart.marker):.1f}" y2="{y1}" stroke="#444" '
                     'stroke-dasharray="4 3"/>')
    parts.append("</svg>")
    return "".join(parts)


def _y_axis(unit: str, ticks: Sequence[float], side: int, x0: float, x1: float, y0: float,
            y1: float) -> str:
    def sy(y: float) -> float:
        return y1 - (y - ticks[0]) / ((ticks[-1] - ticks[0]) or 1.0) * (y1 - y0)

    at, anchor, dx = (x0, "end", -6) if side == 0 else (x1, "start", 6)
    out = []
    for y in ticks:
        if side == 0:
            out.append(f'<line x1="{x0}" y1="{sy(y):.1f}" x2="{x1}" y2="{sy(y):.1f}" '
                       'stroke="#eee"/>')
        out.append(f'<text class="tick" x="{at + dx}" y="{sy(y) + 4:.1f}" '
                   f'text-anchor="{anchor}" font-size="11">{e(tick_text(y, ticks))}</text>')
    out.append(f'<text class="axis-label" x="{at + dx}" y="{y0 - 20}" text-anchor="{anchor}" '
               f'font-size="12">{e(unit or "value")}</text>')
    return "".join(out)


def _trace(s: Series, colour: str, sx: Callable[[float], float], ticks: Sequence[float],
           y0: float, y1: float) -> str:
    span = (ticks[-1] - ticks[0]) or 1.0
    xy = [(sx(x), y1 - (y - ticks[0]) / span * (y1 - y0)) for x, y in thinned(s.points)]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    last = (f'<circle class="last" cx="{xy[-1][0]:.1f}" cy="{xy[-1][1]:.1f}" r="2.5" '
            f'fill="{colour}"/>') if xy else ""
    return (f'<polyline class="trace" data-series="{e(s.name)}" fill="none" '
            f'stroke="{colour}" stroke-width="1.6" points="{coords}"/>{last}')
