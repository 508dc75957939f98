"""The ``capture`` and ``capture/info`` actions: waveform captures through ``/capture``.

``capture/info`` lists the channels (``GET /capture?i``). ``capture`` looks the channels up
the same way (names become numbers, units are known), arms a capture (``GET /capture?n&d=
&c=...[&C=&M=&L=&T=&p=]``, the action's own call), polls its progress with progress-only
queries (``?q&n=<cookie>``; firmware before 4.9 answers "Invalid query option", then plain
``?n=<cookie>`` polls are used) until it is ``full``, and answers the samples of each
channel in its physical unit with their times. A capture with a trigger always carries a
trigger timeout (``T``), so it ends on the meter even when the trigger never happens and
never leaves the one capture interface armed. Every request takes the meter's lane on its
own; between polls the lane is free for the poller.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from gateway.commands.envelope import Fields, invalid
from gateway.commands.policy import Need
from gateway.commands.session import Quick, Session, WebApiCall
from gateway.errors import CommandError, ErrorCode, MeterReportedError
from gateway.meter import (
    CaptureChannel,
    Waveform,
    parse_channels,
    parse_cookie,
    parse_progress,
    parse_waveform,
)

MODES: Final = ("any", "rise", "fall", "gt", "lt")
MAX_DURATION_S: Final = 10.0
DEFAULT_DURATION_S: Final = 0.1
MAX_TRIGGER_TIMEOUT_S: Final = 60.0
DEFAULT_TRIGGER_TIMEOUT_S: Final = 1.0
MAX_CHANNELS: Final = 16
BUSY_TEXT: Final = "Capture interface is busy"
NO_PROGRESS_QUERY: Final = "Invalid query option"
_POLL_FIRST_S: Final = 0.05
_POLL_MAX_S: Final = 0.5
INFO_CALL: Final = WebApiCall("GET", "/capture", query="i")


@dataclass(frozen=True, slots=True)
class CaptureInfo(Quick):
    """``GET /capture?i``: the channels a capture can record."""

    need: ClassVar[Need] = Need("capture")

    async def run(self, session: Session) -> Any:
        channels = parse_channels(session.meter, await session.send(INFO_CALL))
        return {"channels": [channel_json(c) for c in channels]}


@dataclass(frozen=True, slots=True)
class Trigger:
    """When a capture starts: ``channel`` meets ``mode`` at ``level``, at the latest after
    ``timeout_s``; ``pretrigger_s`` of samples before it are kept."""

    channel: str | int | None  # None: the first captured channel
    mode: str
    level: float
    timeout_s: float
    pretrigger_s: float


@dataclass(frozen=True, slots=True)
class Capture:
    """Arm a capture, wait until it is full, answer the samples per channel."""

    channels: tuple[str | int, ...]  # empty: every channel
    duration_s: float
    trigger: Trigger | None
    need: ClassVar[Need] = Need("capture")
    reboots: ClassVar[bool] = False
    cooldown: ClassVar[str] = ""

    @property
    def wait_s(self) -> float:
        return self.duration_s + (self.trigger.timeout_s if self.trigger else 0.0)

    async def run(self, session: Session) -> Any:
        known = parse_channels(session.meter, await session.read(INFO_CALL))
        chosen = [pick(known, c) for c in self.channels] or list(known)
        numbers = sorted({c.number for c in chosen})
        query = [("n", ""), ("d", num(self.duration_s))] + [("c", str(n)) for n in numbers]
        trigger_channel: CaptureChannel | None = None
        if self.trigger is not None:
            t = self.trigger
            trigger_channel = pick(known, t.channel) if t.channel is not None else \
                next(c for c in known if c.number == numbers[0])
            query += [("C", str(trigger_channel.number)), ("M", t.mode), ("L", num(t.level)),
                      ("T", num(round(t.timeout_s * 1000, 3))), ("p", num(t.pretrigger_s))]
        arm = WebApiCall("GET", "/capture", query=_join(query))
        try:
            cookie = parse_cookie(session.meter, await session.send(arm))
        except MeterReportedError as exc:
            if BUSY_TEXT.lower() not in exc.message.lower():
                raise
            session.refused()
            raise CommandError(ErrorCode.BUSY, f"the capture interface of meter "
                               f"{session.meter} is busy (another capture is running); "
                               "try again later") from None
        waveform = await _wait_full(session, cookie, {c.number: c for c in known})
        return waveform_json(waveform, cookie, self.duration_s, trigger_channel)


async def _wait_full(session: Session, cookie: int,
                     channels: dict[int, CaptureChannel]) -> Waveform:
    """Poll until the capture is full: progress-only queries where the firmware has them."""
    progress_only = True
    delay = _POLL_FIRST_S
    while True:
        query = f"q&n={cookie}" if progress_only else f"n={cookie}"
        try:
            reply = await session.read(WebApiCall("GET", "/capture", query=query))
        except MeterReportedError as exc:
            if not progress_only or NO_PROGRESS_QUERY.lower() not in exc.message.lower():
                raise
            progress_only = False  # firmware before 4.9
            continue
        state = parse_progress(session.meter, reply).state
        if state == "full":
            if progress_only:
                reply = await session.read(WebApiCall("GET", "/capture", query=f"n={cookie}"))
            return parse_waveform(session.meter, reply, channels)
        if state == "available":
            raise CommandError(ErrorCode.METER_ERROR, f"the capture {cookie} was reset on "
                               f"meter {session.meter} before it was full")
        await asyncio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX_S)


def channel_json(c: CaptureChannel) -> dict[str, Any]:
    return {"number": c.number, "name": c.name, "unit": c.unit}


def waveform_json(w: Waveform, cookie: int, duration_s: float,
                  trigger_channel: CaptureChannel | None) -> dict[str, Any]:
    """The answer: per channel its samples ``v`` (in ``unit``) at ``t`` seconds after
    ``first_sample`` (rounded to the microsecond)."""
    trigger = None
    if w.trigger is not None:
        number, at = w.trigger
        name = next((tr.channel.name for tr in w.traces if tr.channel.number == number), "")
        trigger = {"channel": name, "t": round(at, 6)}
    return {
        "capture_id": cookie, "first_sample": w.first_sample,
        "ts_freq": int(w.ts_freq) if w.ts_freq.is_integer() else w.ts_freq,
        "duration_s": duration_s,
        "trigger_channel": None if trigger_channel is None else trigger_channel.name,
        "trigger": trigger,
        "channels": [{**channel_json(tr.channel), "t": [round(t, 6) for t in tr.times],
                      "v": list(tr.values)} for tr in w.traces],
    }


def pick(known: Sequence[CaptureChannel], wanted: str | int) -> CaptureChannel:
    """The channel named (case-blind) or numbered ``wanted``."""
    for c in known:
        if c.number == wanted if isinstance(wanted, int) else c.name.lower() == wanted.lower():
            return c
    listed = ", ".join(f"{c.number} {c.name}" for c in known)
    raise invalid(f"capture: the meter has no channel {wanted!r}; it has {listed}")


def num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _join(query: list[tuple[str, str]]) -> str:
    return "&".join(k if v == "" else f"{k}={v}" for k, v in query)


def _seconds(f: Fields, name: str, default: float, high: float, *,
             zero: bool = False) -> float:
    value = f.take(name, "any", default=default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or value > high or value < 0 or (value == 0 and not zero):
        low = "0" if zero else "above 0"
        raise invalid(f"{f.action}: {name!r} must be a number of seconds from {low} to "
                      f"{high:g}")
    return float(value)


def _channel_ref(f: Fields, value: Any, name: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise invalid(f"capture: {name} must be channel names (\"L1\") or numbers (0)")
    return value


def parse_capture(f: Fields) -> Capture:
    listed = f.take("channels", "array", default=[])
    if len(listed) > MAX_CHANNELS:
        raise invalid(f"capture: at most {MAX_CHANNELS} channels")
    channels = tuple(_channel_ref(f, c, "'channels'") for c in listed)
    duration = _seconds(f, "duration_s", DEFAULT_DURATION_S, MAX_DURATION_S)
    mode = f.take("mode", "string", default="any")
    if mode not in MODES:
        raise invalid(f"capture: 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    given = [k for k in ("trigger_channel", "level", "trigger_timeout_s", "pretrigger_s")
             if f.has(k)]
    if mode == "any":
        if given:
            raise invalid(f"capture: {', '.join(given)} need a trigger 'mode' (rise, fall, "
                          "gt or lt)")
        return Capture(channels, duration, None)
    raw = f.take("trigger_channel", "any")
    level = f.take("level", "any", default=0)
    if isinstance(level, bool) or not isinstance(level, int | float) or not math.isfinite(level):
        raise invalid("capture: 'level' must be a number (in the trigger channel's unit)")
    trigger = Trigger(None if raw is None else _channel_ref(f, raw, "'trigger_channel'"),
                      mode, float(level),
                      _seconds(f, "trigger_timeout_s", DEFAULT_TRIGGER_TIMEOUT_S,
                               MAX_TRIGGER_TIMEOUT_S),
                      _seconds(f, "pretrigger_s", 0.0, duration, zero=True))
    return Capture(channels, duration, trigger)
