"""What an action may do on its meter: a :class:`Session` takes the meter's lane around
every call and, for a dry run, stops at the action's own call, reported as a
:class:`WebApiCall` (:class:`Planned`), instead of making it. :class:`Action` is what
every validated request is (:mod:`gateway.commands.actions` holds the table of them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, TypeVar

from gateway.commands.policy import Need
from gateway.errors import CallPending
from gateway.meter import MeterClient

T = TypeVar("T")

_POLL_FIRST_S: Final = 0.05
_POLL_MAX_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class WebApiCall:
    """One WebAPI request as a dry run reports it (secret-looking values masked)."""

    method: str
    path: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    query: str = ""  # sent as it is after "?"

    def as_json(self) -> dict[str, Any]:
        path = "/api" + self.path + ("?" + self.query if self.query else "")
        shown: dict[str, Any] = {"method": self.method, "path": path, "body": self.body}
        if self.headers:
            shown["headers"] = dict(self.headers)
        return shown


class Planned(Exception):
    """Raised by :meth:`Session.call` in a dry run: the call that would have been made
    (``extra``: further members of the dry-run answer, e.g. ``disruptive``)."""

    def __init__(self, call: WebApiCall, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(call.method, call.path)
        self.call = call
        self.extra = dict(extra or {})


class Session:
    """One command's access to its meter; ``attempted`` tells whether the action's own
    call was sent (and so may have changed something on the meter)."""

    def __init__(self, client: MeterClient, lane: asyncio.Lock, *, dry_run: bool,
                 meter: str = "") -> None:
        self._client = client
        self._lane = lane
        self.dry_run = dry_run
        self.meter = meter
        self.attempted = False

    async def lookup(self, fn: Callable[[MeterClient], Awaitable[T]]) -> T:
        """A read the action needs before (or after) its own call; made in dry runs too."""
        async with self._lane:
            return await fn(self._client)

    async def call(self, call: WebApiCall, fn: Callable[[MeterClient], Awaitable[T]]) -> T:
        """The action's own call; a dry run stops here with :class:`Planned`."""
        if self.dry_run:
            raise Planned(call)
        async with self._lane:
            self.attempted = True
            return await fn(self._client)

    async def read(self, call: WebApiCall) -> Any:
        """A read the action needs, made as ``call`` says (in dry runs too)."""
        return await self.lookup(lambda c: c.fetch(call.method, call.path, call.query,
                                                   call.body))

    async def send(self, call: WebApiCall, body: Any = None, *,
                   disruptive: bool = False) -> Any:
        """The action's own call as ``call`` shows it (``body``: what is sent when the
        shown body is masked); a dry run stops here with :class:`Planned`."""
        sent = call.body if body is None else body
        if self.dry_run and disruptive:
            raise Planned(call, {"disruptive": True})
        return await self.call(call, lambda c: c.fetch(call.method, call.path, call.query,
                                                       sent))

    def refused(self) -> None:
        """The meter refused the action's own call before doing anything (e.g. a busy
        capture interface): a retry with the same transaction runs again."""
        self.attempted = False

    async def ctrl_result(self, tid: int) -> Any:
        """Poll ``/ctrl/call/{tid}`` until the call finished (the router's timeout bounds it)."""
        delay = _POLL_FIRST_S
        while True:
            try:
                return await self.lookup(lambda c: c.ctrl_result(tid))
            except CallPending:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)


class Action(Protocol):
    """A validated request: the permission it needs and how to run it. ``cooldown`` names
    the cool-down a disruptive action starts and obeys (``reboot``, ``ctid``; "": none);
    ``wait_s`` is how long the request itself asks the meter to take (a capture's duration
    and trigger timeout, a CTid scan's timeout), added to ``commands.timeout_s``."""

    @property
    def need(self) -> Need: ...

    @property
    def reboots(self) -> bool: ...

    @property
    def cooldown(self) -> str: ...

    @property
    def wait_s(self) -> float: ...

    async def run(self, session: Session) -> Any: ...


class Quick:
    """The defaults of an action that starts no cool-down and asks for no extra time."""

    __slots__ = ()
    reboots: ClassVar[bool] = False
    cooldown: ClassVar[str] = ""
    wait_s: ClassVar[float] = 0.0
