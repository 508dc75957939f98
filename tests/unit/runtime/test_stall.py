"""The loop watchdog in this process, with an injected action instead of the exit: it fires
when a coroutine blocks the loop, names where, and stays quiet while the loop turns."""

from __future__ import annotations

import asyncio
import threading
import time

import structlog

from gateway.runtime.stall import LoopWatchdog, Stall
from tests.support.waiting import async_wait_until, wait_until

LIMIT_S = 0.4


def stuck_in_a_blocking_call() -> None:
    time.sleep(LIMIT_S * 4)  # the loop stands still


async def test_a_blocked_loop_is_reported_with_the_stack_of_its_thread() -> None:
    seen: list[Stall] = []
    dog = LoopWatchdog(LIMIT_S, seen.append)
    with structlog.testing.capture_logs() as logs:
        dog.start()
        try:
            await asyncio.sleep(LIMIT_S)  # a turning loop first
            assert seen == []
            stuck_in_a_blocking_call()
            wait_until(lambda: seen, what="the action")
        finally:
            dog.stop()
    stall = seen[0]
    assert stall.stalled_s >= LIMIT_S
    assert stall.limit_s == LIMIT_S
    assert stall.thread == threading.current_thread().name
    assert any("in stuck_in_a_blocking_call: time.sleep" in line for line in stall.stack)
    assert stall.stack[-1].endswith("time.sleep(LIMIT_S * 4)  # the loop stands still")
    events = [e for e in logs if e["event"] == "event_loop_stalled"]
    assert len(events) == 1
    assert events[0]["log_level"] == "critical"
    assert events[0]["stack"] == list(stall.stack)
    assert events[0]["stalled_s"] == stall.stalled_s
    assert len(seen) == 1  # once


async def test_a_turning_loop_never_fires_even_when_busy_in_short_bursts() -> None:
    seen: list[Stall] = []
    dog = LoopWatchdog(LIMIT_S, seen.append)
    dog.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < LIMIT_S * 6:
            time.sleep(LIMIT_S / 4)  # busy, but it yields between bursts
            await asyncio.sleep(0)
        assert dog.running
    finally:
        dog.stop()
    assert seen == []
    assert not dog.running


async def test_after_stop_nothing_is_watched() -> None:
    seen: list[Stall] = []
    dog = LoopWatchdog(LIMIT_S, seen.append)
    dog.start()
    await async_wait_until(lambda: dog.running, what="the watchdog thread")
    dog.stop()
    assert not dog.running
    time.sleep(LIMIT_S * 2)  # a blocked loop after the stop (a process on its way out)
    assert seen == []
