"""One task per meter: a steady poll schedule, backoff while failing, availability.

Schedule: polls are due at fixed slots ``start + k * poll_interval_s`` on the monotonic clock,
so the schedule never drifts. A poll that overruns its slot skips the missed slots (counted in
``polls_skipped``) instead of piling up. Each HTTP request is bounded by the meter's
``timeout_s`` (below the interval, checked by the config); the whole poll, a re-login
included, by ``timeout_s * (requests + 2)``.

While polls fail, the next attempt waits ``poll_interval_s * 2**(failures-1)`` (at least one
interval, at most ``max(interval, min(30 s, 10 intervals))``, up to 20 % shorter by jitter);
the first good poll returns to the interval grid. After ``offline_after`` failed polls in a
row the meter is offline; the first good poll makes it online. Each transition is logged once
(``meter_offline`` / ``meter_online``).

A poll that timed out while the gateway's own event loop spent at least
:data:`gateway.core.lag.EXCUSE_SHARE` of the poll's time late (a saturated core: the reply
may have waited in the socket) is the gateway's failure, not the meter's: it counts in
``polls_failed`` and ``late_timeouts`` but not towards ``offline_after``, and the next poll
keeps the slot grid instead of backing off. Otherwise an overloaded gateway takes answering
meters offline, and each comes back with a login, its identity and its gap to read: more
load. At most :data:`EXCUSED_TIMEOUTS` timeouts are excused between two good polls, so a
meter that stopped answering still goes offline behind a loop that stays late.

The identity (``/sys``) is read at start and again after every offline period; the register
metadata is read at start, after an offline period and whenever a reading shows another
register set (then ``on_registers`` is published).

Every poll holds the meter's *lane* (an ``asyncio.Lock`` shared with the command router and
the history backfill), so a command never races a poll; ``next_due`` tells the backfill how
long the lane stays free. ``lapses`` counts the polls lost while the meter was not known
offline (failed, or skipped); the catch-up budget (:mod:`gateway.core.budget`) reads it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import structlog

from gateway.config import MeterConfig
from gateway.core.histogram import Histogram
from gateway.core.hub import Hub
from gateway.core.lag import EXCUSE_SHARE, LoopLag
from gateway.errors import MeterError, MeterTimeout
from gateway.model import Availability, Identity, LocalValue, Reading, RegisterInfo

log = structlog.get_logger(__name__)

BACKOFF_CAP_S = 30.0
BACKOFF_CAP_INTERVALS = 10
EXCUSED_TIMEOUTS = 10  # timeouts in a late loop not held against a meter, between good polls


class MeterSource(Protocol):
    """What the poller needs from a meter client."""

    async def identity(self) -> Identity: ...

    async def register_info(self) -> tuple[RegisterInfo, ...]: ...

    async def read(self, names: Sequence[str] | None = None) -> Reading: ...

    async def local(self) -> tuple[LocalValue, ...]: ...


@dataclass(slots=True)
class PollStats:
    """Per-meter counters (for metrics and status pages)."""

    polls_ok: int = 0
    polls_failed: int = 0
    polls_skipped: int = 0
    lapses: int = 0  # polls lost while the meter was not known offline: failed or skipped
    late_timeouts: int = 0  # failed polls that timed out in a late loop (the gateway's fault)
    excused: int = 0  # of them since the last good poll
    consecutive_failures: int = 0  # failed polls in a row held against the meter
    last_latency_s: float | None = None
    last_error: str = ""
    online: bool | None = None
    latency: Histogram = field(default_factory=Histogram)  # of the successful polls
    busy_since: float | None = None  # clock() when the running poll began (None: idle)
    busy_deadline_s: float = 0.0  # the running poll's own time limit


@dataclass(frozen=True, slots=True)
class _Result:
    reading: Reading
    signature: tuple[tuple[str, str], ...]
    identity: Identity | None
    registers: tuple[RegisterInfo, ...] | None


def backoff_delay(interval: float, failures: int, jitter: float = 0.0) -> float:
    """The wait after ``failures`` failed polls in a row; ``jitter`` in [0, 1) shortens it."""
    cap = max(interval, min(BACKOFF_CAP_S, BACKOFF_CAP_INTERVALS * interval))
    base = min(cap, interval * 2.0 ** min(failures - 1, 30))
    return max(interval, base * (1.0 - 0.2 * jitter))


def registers_of(reading: Reading, infos: Sequence[RegisterInfo]) -> tuple[RegisterInfo, ...]:
    """The register set a poller publishes for ``reading``: each name the reading has, in its
    order, with the meter's metadata (type code and idx -1 where the meter gave none)."""
    known = {i.name: i for i in infos}
    return tuple(known.get(v.name) or RegisterInfo(v.name, v.type_code, -1)
                 for v in reading.registers)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MeterError):
        return f"{type(exc).__name__}: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Poller:
    """Polls one meter forever (``run``), publishing to the hub. ``phase_s`` delays the
    first poll, so that many meters spread their polls over the interval."""

    def __init__(
        self,
        cfg: MeterConfig,
        source: MeterSource,
        hub: Hub,
        lane: asyncio.Lock,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        phase_s: float = 0.0,
        lag: LoopLag | None = None,
    ) -> None:
        self.cfg = cfg
        self._phase_s = phase_s
        self._lag = lag  # None: every timeout is the meter's
        self.meter = cfg.id
        self.stats = PollStats()
        self._source = source
        self._hub = hub
        self._lane = lane
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self._names = cfg.registers
        self._need_identity = True
        self._signature: tuple[tuple[str, str], ...] | None = None
        self.next_due: float | None = None  # clock() of the next poll, while ``run`` runs

    async def run(self) -> None:
        """Poll on the schedule until cancelled."""
        interval = self.cfg.poll_interval_s
        due = self._clock() + self._phase_s
        while True:
            self.next_due = due
            delay = due - self._clock()
            if delay > 0:
                await self._sleep(delay)
            ok = await self.poll_once()
            finished = self._clock()
            if ok or self.stats.consecutive_failures == 0:  # succeeded, or failed excused
                due += interval
                if finished > due:
                    missed = math.ceil((finished - due) / interval)
                    self.stats.polls_skipped += missed
                    self.stats.lapses += missed
                    due += missed * interval
            else:
                failures = self.stats.consecutive_failures
                due = finished + backoff_delay(interval, failures, self._rng.random())

    def stalled(self) -> bool:
        """True when the running poll has outlived three intervals and its own deadline (it
        waits for the lane, or something it awaits ignores the timeout)."""
        since, interval = self.stats.busy_since, self.cfg.poll_interval_s
        if since is None:
            return False
        return self._clock() - since > max(3 * interval, self.stats.busy_deadline_s + interval)

    async def poll_once(self) -> bool:
        """One poll under the lane; publishes the outcome. True when it succeeded."""
        started = self._clock()
        lag_before = self._lag.total_s if self._lag is not None else 0.0
        deadline = self.cfg.timeout_s * (self._planned_requests() + 2)
        self.stats.busy_since, self.stats.busy_deadline_s = started, deadline
        try:
            async with self._lane, asyncio.timeout(deadline):
                result = await self._fetch()
        except TimeoutError:
            self._failed(f"MeterTimeout: the poll took longer than {deadline:g} s",
                         self._late(started, lag_before))
        except MeterTimeout as exc:
            self._failed(_reason(exc), self._late(started, lag_before))
        except MeterError as exc:
            self._failed(_reason(exc))
        except Exception as exc:  # a bug must not end this meter's polling for good
            log.error("poll_crashed", meter=self.meter, error=repr(exc), exc_info=exc)
            self._failed(_reason(exc))
        else:
            self._succeeded(result, self._clock() - started)
            return True
        finally:
            self.stats.busy_since = None
        return False

    def _late(self, started: float, lag_before: float) -> bool:
        """Whether a poll that began at ``started`` (the loop's lateness then
        ``lag_before``) and timed out is excused: the loop was late long enough."""
        lag = self._lag
        return (lag is not None and self.stats.excused < EXCUSED_TIMEOUTS
                and lag.late_share(lag_before, self._clock() - started) >= EXCUSE_SHARE)

    def _planned_requests(self) -> int:
        return (
            1
            + (1 if self.cfg.local else 0)
            + (2 if self._need_identity else 0)
            + (1 if self._signature is None else 0)
        )

    async def _fetch(self) -> _Result:
        source = self._source
        identity = await source.identity() if self._need_identity else None
        reading = await source.read(self._names)
        if self.cfg.local:
            reading = replace(reading, local=await source.local())
        signature = tuple((v.name, v.type_code) for v in reading.registers)
        registers = None
        if signature != self._signature:
            registers = registers_of(reading, await source.register_info())
        return _Result(reading, signature, identity, registers)

    def _succeeded(self, result: _Result, latency: float) -> None:
        stats = self.stats
        failed_before = stats.consecutive_failures
        stats.polls_ok += 1
        stats.consecutive_failures = 0
        stats.excused = 0
        stats.last_latency_s = latency
        stats.latency.observe(latency)
        hub = self._hub
        if result.identity is not None:
            self._need_identity = False
            hub.publish_identity(self.meter, result.identity)
        if result.registers is not None:
            self._signature = result.signature
            hub.publish_registers(self.meter, result.registers)
        hub.publish_reading(result.reading)
        if stats.online is not True:
            reason = "first_poll" if stats.online is None else "recovered"
            stats.online = True
            log.info("meter_online", meter=self.meter, reason=reason, failed_polls=failed_before)
            hub.publish_availability(Availability(self.meter, True, self._wall(), reason))

    def _failed(self, reason: str, excused: bool = False) -> None:
        stats = self.stats
        stats.polls_failed += 1
        if stats.online is not False:
            stats.lapses += 1
        stats.last_error = reason
        if excused:
            stats.late_timeouts += 1
            stats.excused += 1
            log.debug("poll_failed", meter=self.meter, reason=reason, gateway_late=True)
            return
        stats.consecutive_failures += 1
        failed = stats.consecutive_failures
        log.debug("poll_failed", meter=self.meter, reason=reason, failed_polls=failed)
        if stats.online is not False and failed >= self.cfg.offline_after:
            stats.online = False
            self._need_identity = True
            self._signature = None
            log.warning("meter_offline", meter=self.meter, reason=reason, failed_polls=failed)
            self._hub.publish_availability(
                Availability(self.meter, False, self._wall(), reason, failed)
            )
