"""Waveform capture replies (``/capture``, egauge-webapi §8) as typed values.

- ``?i`` -> ``{"channels": {"<n>": {"name", "unit"}}}``: :func:`parse_channels`;
- ``?n&...`` (arm) -> ``{"state": "armed", "cookie": N}``: :func:`parse_cookie`;
- ``?n=<cookie>`` / ``?q&n=<cookie>`` -> a progress object (``state``, ``count``,
  ``max_count``): :func:`parse_progress`; once ``full`` (without ``q``) also ``ts_freq``,
  ``first_sample``, ``ch_mask`` and the samples ``r``: :func:`parse_waveform`.

Samples: each ``r`` entry carries ``t``, the ticks (of ``ts_freq`` per second) since the
previous entry, and ``d``, one or more values; values cycle through the channels of
``ch_mask`` (64 bits as two 32-bit words, low word first) in ascending order. The first
entry is the first sample, so times are counted from it: a trace's ``times`` are seconds
after ``first_sample``. Without the ``r`` (raw) flag the meter sends physical values in the
channel's unit (V, A). ``trigger: true`` marks the sample at which the trigger fired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.meter.fields import Fields

STATES = ("available", "armed", "capturing", "full")


@dataclass(frozen=True, slots=True)
class CaptureChannel:
    """One capture channel: its number (as ``c=`` takes it), name and unit."""

    number: int
    name: str
    unit: str


@dataclass(frozen=True, slots=True)
class CaptureProgress:
    state: str  # available | armed | capturing | full
    count: int | None = None
    max_count: int | None = None


@dataclass(frozen=True, slots=True)
class Trace:
    """The samples of one channel: ``times`` in seconds after the first sample."""

    channel: CaptureChannel
    times: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Waveform:
    """A full capture: the traces in channel order and where the trigger fired."""

    first_sample: float  # Unix seconds of the first sample
    ts_freq: float  # ticks per second of ``t``
    traces: tuple[Trace, ...]
    trigger: tuple[int, float] | None = None  # (channel number, seconds after first_sample)


def parse_channels(meter: str, reply: Any) -> tuple[CaptureChannel, ...]:
    """The channels of a ``?i`` reply, by number."""
    f = Fields(meter)
    table = f.obj(f.obj(reply, "body").get("channels"), "channels")
    out = []
    for key, entry in table.items():
        where = f"channels.{key}"
        if not key.isdigit() or int(key) > 63:
            raise f.error(where, "expected a channel number 0..63")
        e = f.obj(entry, where)
        out.append(CaptureChannel(int(key), f.text(e.get("name"), where + ".name"),
                                  f.text(e.get("unit", ""), where + ".unit")))
    return tuple(sorted(out, key=lambda c: c.number))


def parse_cookie(meter: str, reply: Any) -> int:
    """The cookie of an armed capture."""
    f = Fields(meter)
    body = f.obj(reply, "body")
    cookie = f.integer(body.get("cookie"), "cookie")
    if body.get("state") not in ("armed", "capturing", "full"):
        raise f.error("state", f"expected an armed capture, got {body.get('state')!r}")
    return cookie


def parse_progress(meter: str, reply: Any) -> CaptureProgress:
    f = Fields(meter)
    body = f.obj(reply, "body")
    state = f.text(body.get("state"), "state")
    if state not in STATES:
        raise f.error("state", f"expected one of {', '.join(STATES)}, got {state!r}")
    count, most = body.get("count"), body.get("max_count")
    return CaptureProgress(state, None if count is None else f.integer(count, "count"),
                           None if most is None else f.integer(most, "max_count"))


def parse_waveform(meter: str, reply: Any,
                   channels: Mapping[int, CaptureChannel]) -> Waveform:
    """The traces of a ``full`` reply; ``channels`` names the numbers (others are named
    ``#<n>`` without a unit)."""
    f = Fields(meter)
    body = f.obj(reply, "body")
    freq = f.number(body.get("ts_freq"), "ts_freq")
    if freq <= 0:
        raise f.error("ts_freq", "expected a positive tick rate")
    first = f.stamp(body.get("first_sample"), "first_sample")
    words = f.array(body.get("ch_mask"), "ch_mask")
    mask = 0
    for i, word in enumerate(words):
        mask |= (f.integer(word, f"ch_mask[{i}]") & 0xFFFFFFFF) << (32 * i)
    order = [n for n in range(64) if mask >> n & 1]
    if not order:
        raise f.error("ch_mask", "no channel is set")
    times: dict[int, list[float]] = {n: [] for n in order}
    values: dict[int, list[float]] = {n: [] for n in order}
    trigger: tuple[int, float] | None = None
    ticks, k = 0, 0
    for i, entry in enumerate(f.array(body.get("r"), "r")):
        e = f.obj(entry, f"r[{i}]")
        if i:
            ticks += f.integer(e.get("t"), f"r[{i}].t")
        at = ticks / freq
        for j, value in enumerate(f.array(e.get("d"), f"r[{i}].d")):
            channel = order[k % len(order)]
            times[channel].append(at)
            values[channel].append(f.number(value, f"r[{i}].d[{j}]"))
            if trigger is None and e.get("trigger") is True and j == 0:
                trigger = (channel, at)
            k += 1
    traces = tuple(
        Trace(channels.get(n) or CaptureChannel(n, f"#{n}", ""), tuple(times[n]),
              tuple(values[n])) for n in order)
    return Waveform(first, freq, traces, trigger)
