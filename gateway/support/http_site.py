"""What the connections of one listening socket share, and the connection limit.

At ``max_connections`` a new connection makes room by closing the connection that has waited
longest for a request -- first among those never served (silent or trickling clients), then
among kept-alive ones -- so a flood of idle or half-open connections never locks out a client
that sends its request; when every connection is busy (an answer in progress, or a client
not reading), the new one is closed at once.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from gateway.support.http_limits import HttpLimits, HttpStats
from gateway.support.throttle import LogThrottle

log = structlog.get_logger("gateway.support.http")


class Member(Protocol):
    """What the site needs of one connection (a
    :class:`~gateway.support.http_protocol.HttpProtocol`)."""

    @property
    def peer(self) -> str: ...
    @property
    def evictable(self) -> bool: ...
    @property
    def eviction_rank(self) -> tuple[bool, float]: ...
    @property
    def held_bytes(self) -> int: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class HttpSite:
    """What the connections of one listening socket share: limits, counters, the log
    throttle, and the open connections (for ``max_connections``)."""

    def __init__(self, limits: HttpLimits, stats: HttpStats | None = None,
                 throttle: LogThrottle | None = None) -> None:
        self.limits = limits
        self.stats = stats if stats is not None else HttpStats()
        self.throttle = throttle or LogThrottle(log, limits.log_interval_s)
        self.connections: set[Member] = set()

    def admit(self, conn: Member) -> bool:
        """Count ``conn`` in, closing the longest-waiting connection at the limit; False
        (the caller closes ``conn``) when every connection is busy."""
        stats = self.stats
        if len(self.connections) >= self.limits.max_connections:
            waiting = [c for c in self.connections if c.evictable]
            if not waiting:
                stats.refused += 1
                self.throttle.emit("warning", "http_connection_refused", peer=conn.peer,
                                   limit=self.limits.max_connections, refused=stats.refused)
                return False
            victim = min(waiting, key=lambda c: c.eviction_rank)
            self.release(victim)
            stats.evicted += 1
            self.throttle.emit("info", "http_connection_evicted", peer=victim.peer,
                               limit=self.limits.max_connections, evicted=stats.evicted)
            victim.abort()
        self.connections.add(conn)
        stats.connections += 1
        stats.accepted += 1
        return True

    def held_bytes(self) -> int:
        """What the open connections hold (see :attr:`HttpProtocol.held_bytes`)."""
        return sum(conn.held_bytes for conn in self.connections)

    def release(self, conn: Member) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.stats.connections -= 1

    def drop_all(self, abort: bool) -> None:
        """Close every connection (``abort``: at once, without flushing)."""
        for conn in list(self.connections):
            if abort:
                conn.abort()
            else:
                conn.close()
