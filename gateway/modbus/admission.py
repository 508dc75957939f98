"""Who may connect to the Modbus server, and who makes room when it is full.

- ``allow_from`` (``modbus.allow_from``): a connection from an address outside these
  networks is closed at once (``None``: everyone may connect);
- at most ``per_address`` connections from one client address;
- at the connection limit, room is made by dropping, in this order:

  1. a connection holding an incomplete frame for :data:`INCOMPLETE_EVICT_S` or longer (the
     oldest incomplete frame first): a well-behaved client sends a request in one piece, so
     a frame that stays incomplete marks a trickling client, however its bytes trickle;
  2. the connection without a request answered for ``idle_evict_s`` or longer (the longest
     first; a connection counts from its connect until its first request is answered).

  Activity is a complete request answered, never bytes alone; otherwise the new connection
  is refused. A connection whose write waits for its meter is never dropped.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final, Protocol, TypeVar

from gateway.errors import ConfigError

INCOMPLETE_EVICT_S: Final = 1.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Candidate(Protocol):
    """What the admission reads of one open connection."""

    @property
    def idle(self) -> bool:
        """Not waiting for a write to its meter (a waiting connection is never dropped)."""
        ...

    @property
    def last_active(self) -> float:
        """When its last request was answered (monotonic; the connect time before that)."""
        ...

    @property
    def incomplete_since(self) -> float | None:
        """Since when it holds the bytes of an incomplete frame (``None``: it holds none)."""
        ...


C = TypeVar("C", bound=Candidate)


def client_address(peername: object) -> tuple[str, str]:
    """``(address, peer)`` of a socket's peer name: the IP address (an IPv4-mapped IPv6
    address as IPv4) and ``ip:port`` for logs."""
    if not isinstance(peername, tuple) or len(peername) < 2:
        return str(peername), str(peername)
    host = str(peername[0])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host, f"{host}:{peername[1]}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        host = str(ip.ipv4_mapped)
    return host, f"{host}:{peername[1]}"


def parse_networks(allow_from: Sequence[str] | None) -> tuple[Network, ...] | None:
    """The networks of ``modbus.allow_from`` (``None``: everyone)."""
    if allow_from is None:
        return None
    try:
        return tuple(ipaddress.ip_network(n) for n in allow_from)
    except ValueError as exc:
        raise ConfigError([f"modbus.allow_from: {exc}"]) from exc


class Admission:
    """The connection policy of one server: the allowlist, the per-address counts and the
    choice of the connection that makes room."""

    def __init__(self, *, per_address: int, idle_evict_s: float,
                 allow_from: Sequence[str] | None = None) -> None:
        self.per_address = per_address
        self.idle_evict_s = idle_evict_s
        self.networks = parse_networks(allow_from)
        self._open: Counter[str] = Counter()  # open connections per client address

    def allowed(self, address: str) -> bool:
        if self.networks is None:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def at_cap(self, address: str) -> bool:
        return self._open[address] >= self.per_address

    def opened(self, address: str) -> None:
        self._open[address] += 1

    def closed(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def victim(self, connections: Iterable[C], now: float) -> tuple[C, str] | None:
        """The connection to drop for a new one, with why (``incomplete_frame`` or
        ``silent``); ``None``: nobody may be dropped."""
        trickler: C | None = None
        silent: C | None = None
        for c in connections:
            if not c.idle:
                continue
            since = c.incomplete_since
            if since is not None and now - since >= INCOMPLETE_EVICT_S and (
                    trickler is None or since < (trickler.incomplete_since or now)):
                trickler = c
            if now - c.last_active >= self.idle_evict_s and (
                    silent is None or c.last_active < silent.last_active):
                silent = c
        if trickler is not None:
            return trickler, "incomplete_frame"
        if silent is not None:
            return silent, "silent"
        return None
