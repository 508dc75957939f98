"""``GET /api/capture``: waveform capture of a simulated meter (egauge-webapi §8).

``?i`` lists the channels: ``0`` L1 and ``1`` L2 (V), ``4``..``8`` S1..S5 (A).
``?n&d=<s>&c=<ch>...&C=<ch>&M=any|rise|fall|gt|lt&L=<level>&T=<ms>&p=<s>`` arms a capture
and answers ``{"state": "armed", "cookie": N}``; ``?n=<cookie>`` answers the progress
(``capturing`` with ``count``/``max_count``, for ``progress_polls`` polls) and then
``full`` with ``ts_freq``, ``first_sample``, ``ch_mask`` and the samples ``r``;
``?q&n=<cookie>`` answers the progress only; ``?R`` resets. A cookie that is no longer the
current capture reads ``{"state": "available"}``. Arming while a capture is armed or
capturing answers ``{"error": "Capture interface is busy."}``.

Samples: one every :data:`SAMPLE_TICKS` ticks of a 1 MHz clock, cycling through the chosen
channels in ascending order, one value per ``r`` entry (``t``: ticks since the previous
entry). Each channel is a sine: voltage channels at sqrt(2) x the line's RMS (about 170 V
peak), current channels at sqrt(2) x the CT's RMS current, all at the line frequency of
that second (about 60 Hz); L2 is opposite L1, currents lag their line by the power factor's
angle (the reversed inverter CTs lead by 180 degrees more). With a trigger (``M`` other
than ``any``), the first sample at which channel ``C`` meets it carries ``trigger: true``;
``p`` seconds of samples precede it. A trigger that does not happen within ``T`` ms fires
anyway at ``T`` (no trigger mark); without ``T`` the capture stays ``armed``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.simulator.reply import QueryError
from gateway.simulator.tree import Json

BUSY = "Capture interface is busy."
TS_FREQ = 1_000_000
SAMPLE_TICKS = 125  # 8000 samples per second over all chosen channels
BUFFER = 8192
_SEARCH_S = 1.0  # how far a trigger is looked for when no timeout is given
CHANNELS: dict[int, tuple[str, str]] = {
    0: ("L1", "V"), 1: ("L2", "V"), 4: ("S1", "A"), 5: ("S2", "A"), 6: ("S3", "A"),
    7: ("S4", "A"), 8: ("S5", "A"),
}
MODES = ("any", "rise", "fall", "gt", "lt")
_RAW_LSB = {"V": 0.01, "A": 0.001}
_KNOWN = frozenset({"i", "n", "q", "R", "r", "d", "c", "C", "M", "L", "T", "p"})

Sine = tuple[float, float, float]  # peak, frequency (Hz), phase (radians) at the second


@dataclass(slots=True)
class _Capture:
    cookie: int
    channels: tuple[int, ...]
    max_count: int
    armed_at: float
    sines: dict[int, Sine]
    start: float | None  # time of the first sample; None: never triggers
    trigger_at: float | None  # when the trigger condition was met
    raw: bool = False
    polls: int = 0
    reset: bool = False


def _number(params: dict[str, str], key: str, low: float = 0.0) -> float | None:
    if key not in params:
        return None
    try:
        value = float(params[key])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low:
        raise QueryError(f"Invalid {key}: {params[key]!r}.")
    return value


def _channel(text: str) -> int:
    if not text.isdigit() or int(text) not in CHANNELS:
        raise QueryError(f"Invalid channel: {text!r}.")
    return int(text)


class Capturer:
    """The capture interface of one meter. ``sine(name, t)`` gives each channel's sine
    ``(peak, frequency, phase)`` for the second of ``t``."""

    def __init__(self, sine: Callable[[str, float], Sine]) -> None:
        self._sine = sine
        self.progress_polls = 1
        self.current: _Capture | None = None

    def channel_info(self) -> dict[str, Json]:
        return {"channels": {str(n): {"name": name, "unit": unit}
                             for n, (name, unit) in CHANNELS.items()}}

    def state(self, cap: _Capture) -> str:
        if cap.start is None:
            return "armed"
        return "capturing" if cap.polls < self.progress_polls else "full"

    def busy(self) -> bool:
        cap = self.current
        return cap is not None and not cap.reset and self.state(cap) != "full"

    def reset(self) -> None:
        if self.current is not None:
            self.current.reset = True

    def handle(self, query: Sequence[tuple[str, str]], now: float) -> dict[str, Json]:
        unknown = [k for k, _ in query if k not in _KNOWN]
        if unknown:
            raise QueryError(f"Invalid query option: {unknown[0]}.")
        params = dict(query)
        if "i" in params:
            return self.channel_info()
        if "R" in params:
            self.reset()
            return {"state": "available"}
        if "n" not in params:
            if self.current is None or self.current.reset:
                return {"state": "available"}
            return {"state": self.state(self.current)}
        if params["n"] == "":
            return self.arm(query, now)
        return self.poll(params["n"], progress_only="q" in params)

    def arm(self, query: Sequence[tuple[str, str]], now: float) -> dict[str, Json]:
        params = dict(query)
        if self.busy():
            raise QueryError(BUSY)
        duration = _number(params, "d")
        channels = tuple(sorted({_channel(v) for k, v in query if k == "c"})) or tuple(CHANNELS)
        mode = params.get("M", "any")
        if mode not in MODES:
            raise QueryError(f"Invalid trigger mode: {mode!r}.")
        trigger_ch = _channel(params["C"]) if "C" in params else channels[0]
        level = _number(params, "L", -math.inf) or 0.0
        timeout_ms = _number(params, "T")
        pretrigger = _number(params, "p") or 0.0
        wanted = BUFFER if duration is None else round(duration * TS_FREQ / SAMPLE_TICKS)
        max_count = max(1, min(BUFFER, wanted))
        sines = {ch: self._sine(CHANNELS[ch][0], now) for ch in set(channels) | {trigger_ch}}
        trigger_at = None
        if mode == "any":
            start: float | None = now
        else:
            limit = _SEARCH_S if timeout_ms is None else timeout_ms / 1000.0
            trigger_at = _find_trigger(sines[trigger_ch], now, mode, level, limit)
            fire = trigger_at if trigger_at is not None else (
                None if timeout_ms is None else now + timeout_ms / 1000.0)
            start = None if fire is None else fire - pretrigger
        cookie = secrets.randbelow(1 << 31) + 1
        self.current = _Capture(cookie, channels, max_count, now, sines, start, trigger_at,
                                raw="r" in params)
        return {"state": "armed", "cookie": cookie}

    def poll(self, cookie_text: str, progress_only: bool) -> dict[str, Json]:
        cap = self.current
        if not cookie_text.isdigit():
            raise QueryError(f"Invalid cookie: {cookie_text!r}.")
        if cap is None or cap.reset or cap.cookie != int(cookie_text):
            return {"state": "available"}
        state = self.state(cap)
        if state == "armed":
            return {"state": "armed"}
        if state == "capturing":
            cap.polls += 1
            count = cap.max_count * cap.polls // (self.progress_polls + 1)
            return {"state": "capturing", "count": count, "max_count": cap.max_count}
        if progress_only:
            return {"state": "full", "count": cap.max_count, "max_count": cap.max_count}
        return self._full(cap)

    def _full(self, cap: _Capture) -> dict[str, Json]:
        assert cap.start is not None
        step = SAMPLE_TICKS / TS_FREQ
        origin = math.floor(cap.armed_at)
        mask = sum(1 << ch for ch in cap.channels)
        rows: list[dict[str, Json]] = []
        marked = cap.trigger_at is None
        first_tick = round((cap.start - math.floor(cap.start)) * TS_FREQ)
        for i in range(cap.max_count):
            ch = cap.channels[i % len(cap.channels)]
            t = cap.start + i * step
            peak, freq, phase = cap.sines[ch]
            value = peak * math.sin(2 * math.pi * freq * (t - origin) + phase)
            unit = CHANNELS[ch][1]
            shown: float | int = round(value / _RAW_LSB[unit]) if cap.raw else round(value, 5)
            row: dict[str, Json] = {"t": first_tick if i == 0 else SAMPLE_TICKS, "d": [shown]}
            if not marked and cap.trigger_at is not None and t >= cap.trigger_at - 1e-9:
                row["trigger"] = True
                marked = True
            rows.append(row)
        return {"state": "full", "ts_freq": TS_FREQ, "first_sample": f"{cap.start:.6f}",
                "ch_mask": [mask & 0xFFFFFFFF, mask >> 32], "r": rows}


def _find_trigger(sine: Sine, now: float, mode: str, level: float, limit_s: float
                  ) -> float | None:
    """The first sample time within ``limit_s`` after ``now`` at which the channel meets
    the trigger condition, or None."""
    peak, freq, phase = sine
    origin = math.floor(now)
    step = SAMPLE_TICKS / TS_FREQ
    previous: float | None = None
    for k in range(round(limit_s / step) + 1):
        t = now + k * step
        value = peak * math.sin(2 * math.pi * freq * (t - origin) + phase)
        met = {"gt": value > level, "lt": value < level,
               "rise": previous is not None and previous < level <= value,
               "fall": previous is not None and previous > level >= value}[mode]
        if met:
            return t
        previous = value
    return None
