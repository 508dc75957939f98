"""Waiting for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest


def wait_until(
    condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition!r}")
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], object] | Callable[[], Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> object:
    """The asyncio form of :func:`wait_until`; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition!r}")
        await asyncio.sleep(interval)


class LoopTurns:
    """Counts the turns of the running event loop: a task that sleeps ``period_s`` (0: one
    turn) and counts, from ``start`` until ``stop``."""

    def __init__(self, period_s: float = 0.0) -> None:
        self.period_s = period_s
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> LoopTurns:
        self._task = asyncio.create_task(self._tick(), name="loop-turns")
        await asyncio.sleep(0)
        self.count = 0
        return self

    def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
        return self.count

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            self.count += 1
