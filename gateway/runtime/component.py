"""What the app runs besides the pollers: outputs and services as :class:`Component` values."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import MeterConfig
from gateway.core import Sink

MeterHook = Callable[[Sequence[MeterConfig]], Callable[[], None]]


@dataclass
class Component:
    """One output or service: optionally a hub sink, with lifecycle steps (all optional).

    - ``start`` runs before any poll (a failure is a start-up failure);
    - ``serve`` runs as a task of the app's TaskGroup;
    - ``drain`` runs at shutdown once the pollers stopped and before the meters are logged
      out (the commands component answers the requests in flight there);
    - ``stop`` runs after the meters went offline and were logged out, in reverse order;
    - ``flush`` writes the component's state files at once, synchronously: on a crash and on
      a forced stop, where ``stop`` does not run;
    - ``meters`` checks the meter set of a configuration reload (raising
      :class:`~gateway.errors.ConfigError` and changing nothing when it cannot serve it) and
      returns the step that switches to it.
    """

    name: str
    sink: Sink | None = None
    start: Callable[[], Awaitable[None]] | None = None
    serve: Callable[[], Coroutine[Any, Any, None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    meters: MeterHook | None = None
    drain: Callable[[], Awaitable[None]] | None = None
    flush: Callable[[], None] | None = None
