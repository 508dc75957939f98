"""The bounded queue that holds outgoing messages while the broker is unreachable.

When it is full, the oldest *droppable* message (state and register values, which a newer
one replaces anyway) goes first; only when none is left does the oldest of the rest go.
``drain()`` gives everything back in the order it was put in.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message on its way to the broker; ``seq`` orders the messages."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    correlation_data: bytes | None = None
    on_ack: Callable[[], None] | None = None  # called once the broker has taken it

    def __lt__(self, other: Outgoing) -> bool:
        return self.seq < other.seq


class Outbox:
    """At most ``limit`` messages; ``dropped`` counts what had to go."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.dropped = 0
        self._important: deque[Outgoing] = deque()
        self._droppable: deque[Outgoing] = deque()

    def __len__(self) -> int:
        return len(self._important) + len(self._droppable)

    def put(self, msg: Outgoing, droppable: bool) -> bool:
        """Queue ``msg``; True when that pushed an older message out."""
        (self._droppable if droppable else self._important).append(msg)
        if len(self) <= self.limit:
            return False
        (self._droppable or self._important).popleft()
        self.dropped += 1
        return True

    def drain(self) -> list[Outgoing]:
        """Every queued message, oldest first; the outbox is empty afterwards."""
        pending = list(heapq.merge(self._important, self._droppable))
        self._important.clear()
        self._droppable.clear()
        return pending
