"""Wake: an ``asyncio.Event`` for one waiting task, that costs nothing while no task waits.

Each meter has a few tasks that sleep until a poll gives them work (its energy counters'
gap reads, its history backfill, its alert watch). ``asyncio.Event`` allocates a deque for
its waiters when it is made, some 600 bytes, three times a meter (``bench/heap.py`` found
them among the largest parts of a meter's memory); a Wake makes its future only while a task
waits. Same methods as an Event (``set``, ``clear``, ``is_set``, ``wait``); a second task
waiting at once is a bug and raises ``RuntimeError``.
"""

from __future__ import annotations

import asyncio


class Wake:
    """A flag one task waits for (``wait`` returns at once while it is set)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        """Until the flag is set (at once if it is)."""
        if self._set:
            return
        if self._waiter is not None:
            raise RuntimeError("another task waits for this Wake already")
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
