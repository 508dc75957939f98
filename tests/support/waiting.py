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
