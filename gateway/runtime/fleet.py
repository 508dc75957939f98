"""The running meters: one client, one lane and one poller per meter, and the poll tasks.

:class:`Fleet` owns them all. The lanes (one ``asyncio.Lock`` per meter) are shared with the
command router and the history backfill, so that a command or a backfill request never races
a poll on a small embedded meter. A configuration reload is applied here
(:meth:`Fleet.apply`), by the object that owns what it replaces.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from gateway.config import MeterConfig
from gateway.core import Hub, LoopLag, Poller
from gateway.meter import MeterClient, TlsContexts, WebApiClient, inverted
from gateway.model import Availability
from gateway.runtime.reload import ReloadPlan

log = structlog.get_logger(__name__)

ClientFactory = Callable[[MeterConfig], MeterClient]
Switch = Callable[[], None]


class WebApiClients:
    """The default client factory: WebAPI clients that share their TLS contexts."""

    def __init__(self) -> None:
        self._tls = TlsContexts()

    def __call__(self, cfg: MeterConfig) -> MeterClient:
        return WebApiClient.from_config(cfg, tls=self._tls)


class Fleet:
    """Clients, lanes, pollers and poll tasks of the meters this instance polls."""

    def __init__(self, hub: Hub, client_factory: ClientFactory) -> None:
        self.hub = hub
        self.client_factory = client_factory
        self.clients: dict[str, MeterClient] = {}
        self.lanes: dict[str, asyncio.Lock] = {}
        self.pollers: dict[str, Poller] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self.lag = LoopLag()  # how late the loop runs (the app runs it): excuses timeouts
        # the pollers' backoff jitter: one generator for all (its state is 2.5 kB)
        self._jitter = random.Random()  # noqa: S311  (jitter, not cryptography)

    def build(self, meters: Sequence[MeterConfig]) -> None:
        """A client and poller per meter, their first polls spread over the interval."""
        count = len(meters)
        for i, m in enumerate(meters):
            self.add(m, self.client_factory(m), m.poll_interval_s * i / count)

    def add(self, m: MeterConfig, client: MeterClient, phase_s: float = 0.0) -> None:
        """Poll ``m`` with ``client`` (its task starts with :meth:`start_poller`); the
        registers of ``m.invert`` read with the opposite sign everywhere."""
        client = inverted(client, m.invert)
        self.clients[m.id] = client
        lane = self.lanes.setdefault(m.id, asyncio.Lock())
        self.pollers[m.id] = Poller(m, client, self.hub, lane, rng=self._jitter,
                                   phase_s=phase_s, lag=self.lag)

    def lane_of(self, meter: str
                ) -> tuple[MeterClient, asyncio.Lock, Callable[[], float | None]] | None:
        """What a backfill through ``meter``'s lane needs: its client, its lane and when its
        next poll is due (None: not polled here now)."""
        poller, client = self.pollers.get(meter), self.clients.get(meter)
        if poller is None or client is None:
            return None
        return client, self.lanes[meter], lambda: poller.next_due

    def start(self, group: asyncio.TaskGroup) -> None:
        """One poll task per meter, owned by ``group``."""
        self._group = group
        for meter in self.pollers:
            self.start_poller(meter)

    def start_poller(self, meter: str) -> None:
        assert self._group is not None, "start() first"
        task = self._group.create_task(self.pollers[meter].run(), name=f"poll:{meter}")
        self._tasks[meter] = task

    async def stop_pollers(self, meters: Sequence[str] | None = None) -> None:
        """End these meters' poll tasks (all of them by default; a poll in progress is
        cancelled)."""
        chosen = list(self._tasks) if meters is None else meters
        await cancel([t for m in chosen if (t := self._tasks.pop(m, None))])

    def stuck(self) -> list[str]:
        """The meters whose poller makes no progress: its task ended, or one poll outlived
        three intervals and its own deadline."""
        return [m for m, p in self.pollers.items()
                if (t := self._tasks.get(m)) is None or t.done() or p.stalled()]

    def lapses(self) -> tuple[int, int]:
        """The polls lost so far while their meters were not known offline, and the meters
        polled (what sets the catch-up budgets, :class:`gateway.core.Pace`)."""
        return sum(p.stats.lapses for p in self.pollers.values()), len(self.pollers)

    def online(self) -> int:
        return sum(1 for p in self.pollers.values() if p.stats.online)

    def publish_offline(self, reason: str, meters: Sequence[str] | None = None) -> None:
        """Show these meters (all by default) offline on every output."""
        now = time.time()
        for meter in self.pollers if meters is None else meters:
            self.hub.publish_availability(Availability(meter, False, now, reason))

    async def close(self) -> None:
        """Log every client out of its meter."""
        await close_clients(self.clients)

    async def apply(self, plan: ReloadPlan, clients: Mapping[str, MeterClient],
                    switches: Sequence[Switch]) -> None:
        """Switch to a checked reload plan: ``clients`` are the new clients of
        ``plan.started``, ``switches`` the components' steps to the new meter set (none of
        which can fail)."""
        await self.stop_pollers(plan.restarted)
        self.publish_offline("removed", plan.removed)
        old = {m: self.clients.pop(m) for m in plan.restarted if m in self.clients}
        for meter in plan.restarted:
            self.pollers.pop(meter, None)
        for meter in plan.removed:
            self.lanes.pop(meter, None)
        await close_clients(old)
        self.hub.set_meters(m.id for m in plan.config.meters)
        for m in plan.started:
            self.add(m, clients[m.id])
        for switch in switches:
            switch()
        for m in plan.started:
            self.start_poller(m.id)


async def close_clients(clients: Mapping[str, MeterClient]) -> None:
    """Log these clients out of their meters (concurrently); a failure is only logged."""
    results = await asyncio.gather(*(c.aclose() for c in clients.values()),
                                   return_exceptions=True)
    for meter, result in zip(clients, results, strict=True):
        if isinstance(result, Exception):
            log.warning("meter_logout_failed", meter=meter, error=repr(result))


async def cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Cancel these tasks and wait until they have ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
