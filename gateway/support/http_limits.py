"""The limits of an HTTP server, its counters, and a log throttle.

Every limit bounds what one client can make the server hold or do: the bytes of a request head
and body, the bytes of requests pipelined ahead of the one being answered, the answers written
but not read, the time a request may take to arrive, the connections open at once. A request
over a limit is answered with its 4xx and the connection is closed; a client that stops reading
stops being read. :class:`HttpStats` counts each case (for ``/metrics``); the log keeps to one
line per event and interval however many clients misbehave
(:class:`~gateway.support.throttle.LogThrottle`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

KIB = 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Limits of one server (the defaults suit the gateway's own endpoint).

    - ``max_header_bytes`` (16 KiB): request line and header fields; beyond: 431;
    - ``max_body_bytes`` (64 KiB): a request body, declared or chunked; beyond: 413;
    - ``max_pipelined`` (16): requests answered from one connection before the server lets
      every other connection have its turn;
    - ``max_pipelined_bytes`` (64 KiB): bytes received ahead of the request being answered;
      beyond, the connection is not read until they have been answered;
    - ``write_buffer_bytes`` (64 KiB): answers written but not yet taken by the client; beyond
      (a client that does not read), the connection is not read either, and ...
    - ``write_timeout_s`` (30 s): ... a client that takes none of it for this long is
      disconnected;
    - ``idle_timeout_s`` (30 s): a connection without a request in progress is closed;
    - ``header_timeout_s`` (10 s): from a request's first byte until its head is complete,
      however slowly the bytes trickle in; beyond: 408;
    - ``request_timeout_s`` (30 s): from a request's first byte until its body is complete;
      beyond: 408;
    - ``max_connections`` (64): open at once; a new one beyond makes room by closing the
      connection that has waited longest for a request (preferring ones never served), or is
      closed at once when every connection is busy;
    - ``log_interval_s`` (10 s): at most one log line per event in this time; the line at the
      end of the interval carries ``count``, the occurrences it stands for.
    """

    max_header_bytes: int = 16 * KIB
    max_body_bytes: int = 64 * KIB
    max_pipelined: int = 16
    max_pipelined_bytes: int = 64 * KIB
    write_buffer_bytes: int = 64 * KIB
    write_timeout_s: float = 30.0
    idle_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    max_connections: int = 64
    log_interval_s: float = 10.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"HttpLimits.{f.name} must be a positive number (got {value!r})")
        if self.request_timeout_s < self.header_timeout_s:
            raise ValueError("HttpLimits.request_timeout_s must be at least header_timeout_s")


@dataclass
class HttpStats:
    """Counters of one server since it was made."""

    connections: int = 0  # open now
    accepted: int = 0
    refused: int = 0  # at max_connections with every connection busy
    evicted: int = 0  # waiting connections closed at max_connections to admit a new one
    answered: int = 0  # requests answered by the handler (any status)
    handler_errors: int = 0  # handlers that raised (answered 500)
    rejected: Counter[int] = field(default_factory=Counter)  # error answers by status
    timeouts: Counter[str] = field(default_factory=Counter)  # idle, header, request, write
    paused: int = 0  # times a connection stopped being read (backpressure)
