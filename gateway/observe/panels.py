"""The parts of the status page about one meter: its own health (the gateway may be ready
while a meter is down), its values rounded as their type says, and its charts -- the main
power registers over the last minutes and the last waveform capture (:mod:`.plot`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.meter import decimals
from gateway.observe.health import FRESH_INTERVALS, is_fresh, last_success
from gateway.observe.plot import e, svg_chart
from gateway.observe.view import MeterStatus

STYLE = (".warn{color:#b60}svg.chart{display:block;margin:.2em 0 1em;"
         "font-family:system-ui,sans-serif}")


def value_text(type_code: str, value: float | None, *, cumulative: bool = False) -> str:
    """A rate (or cumulative value) with the decimals its type code carries."""
    if value is None or not math.isfinite(value):
        return "–"
    places = decimals(type_code, cumulative=cumulative)
    return f"{value:.10g}" if places is None else f"{value:.{places}f}"


def health(meter: MeterStatus, now: float) -> tuple[str, str, str]:
    """``(css class, state, why)``: online, failing, stale, offline or not polled yet."""
    avail, stats, state = meter.state.availability, meter.stats, meter.state
    failures = stats.consecutive_failures if stats is not None else 0
    error = stats.last_error if stats is not None else ""
    if avail is None:
        why = f"{failures} failed polls: {error}" if failures and error else "no answer yet"
        return "unk", "not polled yet", why
    if not avail.online:
        why = f"{avail.reason or 'no answer'}; {avail.failed_polls} failed polls, since " \
              f"{_ago(now - avail.since)} ago"
        return "off", "offline", why
    if not is_fresh(state, meter.config, now):
        last = last_success(state)
        since = "never" if last is None else f"{_ago(now - last)} ago"
        return "warn", "stale", (f"no good poll within {FRESH_INTERVALS} intervals (last "
                                 f"{since})" + (f"; {error}" if error else ""))
    if failures:
        return "warn", "failing", f"{failures} failed polls in a row: {error}"
    return "on", "online", ""


def health_html(meter: MeterStatus, now: float) -> str:
    css, label, why = health(meter, now)
    return f"<span class={css}>{e(label)}</span>" + (f" ({e(why)})" if why else "")


def fleet_summary(meters: Sequence[MeterStatus], now: float) -> str:
    """``2 of 3 meters online; b offline (...)``: what readiness alone does not say."""
    states = [(m.config.id, *health(m, now)) for m in meters]
    good = sum(1 for _, css, _, _ in states if css == "on")
    parts = [f"{good} of {len(states)} meters online"]
    parts += [f"{e(name)}: <span class={css}>{e(label)}</span>" for name, css, label, _ in states
              if css != "on"]
    return "; ".join(parts)


def charts_html(meter: MeterStatus) -> str:
    out = []
    if meter.trend is not None:
        out.append(svg_chart(meter.trend, kind="trend", height=200))
    if meter.capture is not None:
        out.append(svg_chart(meter.capture, kind="capture", height=280))
    return "".join(out)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
