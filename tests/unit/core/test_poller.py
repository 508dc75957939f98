"""Poller scheduling with a fake meter and a fake monotonic clock (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence

import pytest
import structlog

from gateway.config import MeterConfig
from gateway.core import Hub, LoopLag
from gateway.core.lag import EXCUSE_SHARE
from gateway.core.poller import EXCUSED_TIMEOUTS, Poller, backoff_delay
from gateway.errors import MeterTimeout, MeterUnavailable
from gateway.model import (
    Identity,
    LocalValue,
    Reading,
    RegisterInfo,
    RegisterValue,
)
from gateway.secret import Secret
from tests.support.recorder import Recorder

START = 1000.0


class FakeTime:
    """A monotonic clock that moves only when the poller sleeps or the fake meter works."""

    def __init__(self) -> None:
        self.now = START

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Stalled:
    """A script step: the read takes ``seconds``, the loop runs ``late_s`` of them late
    (noted in ``lag``), then ``error`` is raised."""

    def __init__(self, lag: LoopLag, late_s: float, error: Exception | None = None,
                 seconds: float = 0.5) -> None:
        self.lag, self.late_s, self.seconds = lag, late_s, seconds
        self.error = error or MeterTimeout("main", "no answer within 0.5 s (GET /register)")


class FakeMeter:
    """Plays a script: each read takes ``latency`` seconds or raises; then it blocks."""

    def __init__(self, time: FakeTime, script: Sequence[float | Exception | Stalled],
                 names: Sequence[str] = ("Grid", "Solar+")) -> None:
        self.time = time
        self.script = list(script)
        self.names = list(names)
        self.read_starts: list[float] = []
        self.identity_calls = 0
        self.info_calls = 0
        self.done = asyncio.Event()
        self.lane: asyncio.Lock | None = None

    async def identity(self) -> Identity:
        self.identity_calls += 1
        return Identity("G1", "EG4030", "4.6")

    async def register_info(self) -> tuple[RegisterInfo, ...]:
        self.info_calls += 1
        return tuple(RegisterInfo(n, "P", i, i) for i, n in enumerate(self.names))

    async def read(self, names: Sequence[str] | None = None) -> Reading:
        if self.lane is not None:
            assert self.lane.locked(), "a poll must hold the meter's lane"
        if not self.script:
            self.done.set()
            await asyncio.Event().wait()
        self.read_starts.append(self.time.now)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, Stalled):
            self.time.now += step.seconds
            step.lag.note(step.late_s)
            raise step.error
        self.time.now += step
        values = tuple(RegisterValue(n, "P", "W", 1.0, 2.0, "kWh") for n in self.names)
        return Reading("main", self.time.now, values)

    async def local(self) -> tuple[LocalValue, ...]:
        return ()


class ZeroJitter(random.Random):
    def random(self) -> float:
        return 0.0


def make(script: Sequence[float | Exception | Stalled], *, interval: float = 1.0,
         offline_after: int = 3, lag: LoopLag | None = None
         ) -> tuple[Poller, FakeMeter, FakeTime, Recorder]:
    time = FakeTime()
    meter = FakeMeter(time, script)
    hub = Hub(["main"])
    rec = Recorder()
    hub.add_sink(rec)
    cfg = MeterConfig("main", "http://127.0.0.1:1", "owner", Secret("pw"),
                      poll_interval_s=interval, timeout_s=interval * 0.5,
                      offline_after=offline_after)
    lane = asyncio.Lock()
    meter.lane = lane
    poller = Poller(cfg, meter, hub, lane, clock=time.clock, sleep=time.sleep,
                    wall=lambda: 1.7e9, rng=ZeroJitter(), lag=lag)
    return poller, meter, time, rec


async def run_script(poller: Poller, meter: FakeMeter) -> None:
    task = asyncio.create_task(poller.run(), name="poll:test")
    done = asyncio.create_task(meter.done.wait(), name="script-done")
    await asyncio.wait([task, done], return_when=asyncio.FIRST_COMPLETED, timeout=10)
    finished = done.done()
    done.cancel()
    assert finished, "the script did not finish"
    assert not task.done(), task  # the poller must not end by itself
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def unavailable() -> MeterUnavailable:
    return MeterUnavailable("main", "connection refused")


async def test_no_drift_polls_start_on_the_interval_grid() -> None:
    poller, meter, _, _ = make([0.3] * 10, interval=2.0)
    await run_script(poller, meter)
    assert meter.read_starts == [START + 2.0 * k for k in range(10)]
    assert poller.stats.polls_ok == 10
    assert poller.stats.polls_skipped == 0
    assert poller.stats.last_latency_s == pytest.approx(0.3)


async def test_a_phase_delays_the_first_poll_and_keeps_the_grid() -> None:
    poller, meter, time, _ = make([0.1] * 3)
    assert meter.lane is not None
    phased = Poller(poller.cfg, meter, Hub(["main"]), meter.lane, clock=time.clock,
                    sleep=time.sleep, phase_s=0.25)
    await run_script(phased, meter)
    assert meter.read_starts == [START + 0.25, START + 1.25, START + 2.25]


async def test_a_slow_poll_skips_the_slots_it_missed() -> None:
    # the poll at t=1 takes 2.5 s and ends at 3.5: the slots at 2 and 3 are gone
    poller, meter, _, _ = make([0.1, 2.5, 0.1, 0.1])
    await run_script(poller, meter)
    assert meter.read_starts == [START, START + 1, START + 4, START + 5]
    assert poller.stats.polls_skipped == 2


async def test_backoff_grows_and_is_capped() -> None:
    poller, meter, _, _ = make([unavailable()] * 8, offline_after=100)
    await run_script(poller, meter)
    gaps = [b - a for a, b in zip(meter.read_starts, meter.read_starts[1:], strict=False)]
    # interval * 2**(n-1), capped at min(30 s, 10 intervals) = 10 s
    assert gaps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert poller.stats.polls_failed == 8
    assert poller.stats.consecutive_failures == 8


def test_backoff_jitter_stays_within_bounds() -> None:
    rng = random.Random(7)
    for failures in range(1, 12):
        base = min(10.0, 2.0 ** (failures - 1))
        for _ in range(50):
            d = backoff_delay(1.0, failures, rng.random())
            assert max(1.0, 0.8 * base) <= d <= base
    assert backoff_delay(60.0, 5) == 60.0  # never shorter than the interval


async def test_good_poll_after_failures_returns_to_the_interval() -> None:
    poller, meter, _, _ = make([unavailable(), unavailable(), 0.0, 0.0, 0.0], offline_after=5)
    await run_script(poller, meter)
    s = meter.read_starts
    assert [b - a for a, b in itertools.pairwise(s)] == [1.0, 2.0, 1.0, 1.0]


async def test_offline_after_n_failures_and_online_again_each_logged_once() -> None:
    script: list[float | Exception] = [0.0, *[unavailable()] * 5, 0.0, 0.0]
    poller, meter, _, rec = make(script, offline_after=3)
    with structlog.testing.capture_logs() as logs:
        await run_script(poller, meter)
    flips = [(a.online, a.reason, a.failed_polls) for a in rec.availability]
    assert flips == [
        (True, "first_poll", 0),
        (False, "MeterUnavailable: connection refused", 3),
        (True, "recovered", 0),
    ]
    offline = [e for e in logs if e["event"] == "meter_offline"]
    online = [e for e in logs if e["event"] == "meter_online"]
    assert len(offline) == 1
    assert offline[0]["failed_polls"] == 3
    assert offline[0]["reason"] == "MeterUnavailable: connection refused"
    assert [e["reason"] for e in online] == ["first_poll", "recovered"]
    assert online[1]["failed_polls"] == 5
    # the identity is read at start and again after the offline period, registers likewise
    # (each attempt while offline tries /sys first: 1 at start, 2 failed, 1 recovered)
    assert meter.identity_calls == 4
    assert len(rec.identities) == 2
    assert len(rec.registers) == 2


async def test_registers_republished_only_when_the_set_changes() -> None:
    poller, meter, _, rec = make([0.0] * 6)
    for _ in range(3):
        assert await poller.poll_once()
    meter.names.append("EV")
    for _ in range(3):
        assert await poller.poll_once()
    assert [[r.name for r in regs] for regs in rec.registers] == [
        ["Grid", "Solar+"], ["Grid", "Solar+", "EV"]]
    assert meter.info_calls == 2
    assert meter.identity_calls == 1
    assert len(rec.readings) == 6


async def test_a_poll_waits_for_the_lane() -> None:
    poller, meter, _, rec = make([0.0])
    lane = meter.lane
    assert lane is not None
    await lane.acquire()
    task = asyncio.create_task(poller.poll_once(), name="poll-once")
    for _ in range(5):
        await asyncio.sleep(0)
    assert meter.read_starts == []  # a command holds the lane: no request went out
    lane.release()
    assert await task is True
    assert len(meter.read_starts) == 1
    assert len(rec.readings) == 1


async def test_a_hanging_meter_times_out() -> None:
    time = FakeTime()

    class Hanging(FakeMeter):
        async def read(self, names: Sequence[str] | None = None) -> Reading:
            await asyncio.Event().wait()
            raise AssertionError

    meter = Hanging(time, [])
    cfg = MeterConfig("main", "http://127.0.0.1:1", "owner", Secret("pw"),
                      poll_interval_s=0.1, timeout_s=0.02, offline_after=1)
    hub = Hub(["main"])
    rec = Recorder()
    hub.add_sink(rec)
    poller = Poller(cfg, meter, hub, asyncio.Lock(), clock=time.clock, sleep=time.sleep)
    assert await poller.poll_once() is False
    assert poller.stats.last_error.startswith("MeterTimeout")
    assert [a.online for a in rec.availability] == [False]


async def test_lapses_count_failed_and_skipped_polls_until_the_meter_is_offline() -> None:
    # one good poll; a slow one that skips two slots; five failures, offline after three
    script: list[float | Exception] = [0.1, 2.5, *[unavailable()] * 5, 0.0]
    poller, meter, _, _ = make(script, offline_after=3)
    await run_script(poller, meter)
    stats = poller.stats
    assert (stats.polls_skipped, stats.polls_failed) == (2, 5)
    assert stats.lapses == 2 + 3  # the failures once it was offline are not lapses


async def test_failures_of_a_meter_never_seen_count_until_it_is_offline() -> None:
    poller, meter, _, _ = make([unavailable()] * 6, offline_after=2)
    await run_script(poller, meter)
    assert poller.stats.polls_failed == 6
    assert poller.stats.lapses == 2


LATE_S = 0.5 * EXCUSE_SHARE * 1.2  # of a 0.5 s read: a little more than the excused share


async def test_timeouts_in_a_late_loop_keep_the_meter_online_and_on_the_grid() -> None:
    lag = LoopLag()
    script: list[float | Exception | Stalled] = [0.0, *[Stalled(lag, LATE_S)] * 5, 0.0]
    poller, meter, _, rec = make(script, offline_after=3, lag=lag)
    await run_script(poller, meter)
    stats = poller.stats
    assert [a.online for a in rec.availability] == [True]  # never offline
    assert (stats.polls_failed, stats.late_timeouts, stats.lapses) == (5, 5, 5)
    assert stats.consecutive_failures == 0  # the good poll reset both
    assert stats.excused == 0
    # no backoff: every poll kept its slot, and the meter was not read anew
    assert meter.read_starts == [START + k for k in range(7)]
    assert meter.identity_calls == 1
    assert meter.info_calls == 1
    assert len(rec.readings) == 2


async def test_a_timeout_in_a_punctual_loop_is_the_meters() -> None:
    lag = LoopLag()
    punctual = 0.5 * EXCUSE_SHARE * 0.8
    poller, meter, _, rec = make([0.0, *[Stalled(lag, punctual)] * 3], offline_after=3, lag=lag)
    await run_script(poller, meter)
    assert [a.online for a in rec.availability] == [True, False]
    assert poller.stats.late_timeouts == 0
    assert poller.stats.consecutive_failures == 3


async def test_only_timeouts_are_excused() -> None:
    lag = LoopLag()
    refused = [Stalled(lag, 0.5, MeterUnavailable("main", "connection refused"))] * 3
    poller, meter, _, rec = make([0.0, *refused], offline_after=3, lag=lag)
    await run_script(poller, meter)
    assert [a.online for a in rec.availability] == [True, False]
    assert poller.stats.late_timeouts == 0


async def test_a_meter_that_stays_silent_in_a_late_loop_still_goes_offline() -> None:
    lag = LoopLag()
    late = [Stalled(lag, LATE_S)] * (EXCUSED_TIMEOUTS + 3)
    script: list[float | Exception | Stalled] = [0.0, *late, 0.0, Stalled(lag, LATE_S)]
    poller, meter, _, rec = make(script, offline_after=3, lag=lag)
    with structlog.testing.capture_logs() as logs:
        await run_script(poller, meter)
    assert [a.online for a in rec.availability] == [True, False, True]
    offline = [e for e in logs if e["event"] == "meter_offline"]
    assert [e["failed_polls"] for e in offline] == [3]
    # the excuses were used up, and the good poll gave them back: the last timeout is one
    assert poller.stats.late_timeouts == EXCUSED_TIMEOUTS + 1
    assert poller.stats.consecutive_failures == 0


async def test_without_a_loop_lag_every_timeout_is_the_meters() -> None:
    lag = LoopLag()  # noted by the script, but not given to the poller
    poller, meter, _, rec = make([0.0, *[Stalled(lag, 0.5)] * 3], offline_after=3)
    await run_script(poller, meter)
    assert [a.online for a in rec.availability] == [True, False]
