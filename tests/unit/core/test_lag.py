"""LoopLag with a fake clock: how late the loop woke it, added up and at worst."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core import LoopLag


async def test_run_adds_up_how_late_each_wake_up_was() -> None:
    now = [50.0]
    late = [0.0, 0.3, 0.0, 0.05]  # how late each wake-up comes
    woke = asyncio.Event()

    async def sleep(seconds: float) -> None:
        now[0] += seconds + (late.pop(0) if late else 0.0)
        if not late:
            woke.set()
        await asyncio.sleep(0)

    lag = LoopLag(period_s=0.1, clock=lambda: now[0], sleep=sleep)
    task = asyncio.create_task(lag.run(), name="loop-lag")
    await woke.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lag.total_s == pytest.approx(0.35)
    assert lag.take_worst() == pytest.approx(0.3)
    assert lag.take_worst() == 0.0  # taken: the next second starts afresh


def test_the_late_share_is_of_the_time_since_the_total_was_read() -> None:
    lag = LoopLag()
    lag.note(0.2)
    before = lag.total_s
    lag.note(0.1)
    lag.note(0.15)
    assert lag.late_share(before, 1.0) == pytest.approx(0.25)
    assert lag.late_share(before, 0.0) == 0.0  # no time passed: nothing to judge
