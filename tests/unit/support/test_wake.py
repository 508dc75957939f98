"""Wake: an event for one waiting task."""

from __future__ import annotations

import asyncio

import pytest

from gateway.support import Wake


async def test_a_set_wake_returns_at_once_until_cleared() -> None:
    wake = Wake()
    wake.set()
    assert wake.is_set()
    await asyncio.wait_for(wake.wait(), 1)  # no waiting: set
    wake.clear()
    assert not wake.is_set()
    waiting = asyncio.create_task(wake.wait())
    await asyncio.sleep(0)
    assert not waiting.done(), "a cleared wake waits"
    wake.set()
    await asyncio.wait_for(waiting, 1)


async def test_a_second_waiter_is_refused_and_a_cancelled_one_leaves_it_usable() -> None:
    wake = Wake()
    first = asyncio.create_task(wake.wait())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="another task waits"):
        await wake.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    again = asyncio.create_task(wake.wait())
    await asyncio.sleep(0)
    wake.set()
    await asyncio.wait_for(again, 1)
