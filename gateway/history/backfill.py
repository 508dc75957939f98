"""One meter's backfill: fills the oldest gap of its coverage from the meter's database,
behind live polling.

Right after a good poll (:meth:`Backfill.run` waits for :attr:`Backfill.polled`) it reads
``/register?time=FROM:STEP:TO&max-rows=N`` under the meter's lane -- only when the request fits
before the next poll is due, with that slot as its time limit. A request that runs out of time
halves the rows asked for next (they grow back after each success), and so does a reply
larger than the client reads (:class:`~gateway.errors.MeterReplyTooLarge`). A request with
``max-rows`` that the meter fails is asked again at once without it (the window alone bounds
the rows); ``max-rows`` is left off for good only for a meter that really refuses it
(firmware before 4.7): its error names the option ("Invalid query option: max-rows.", or an
"invalid query option" error, the only option newer than 4.2 asked being ``max-rows``), or
:data:`MAX_ROWS_STRIKES` requests in a row failed with it and succeeded without it. A
transient failure (an HTTP 500) costs one request without ``max-rows``, nothing more. Any
other failure pauses the backfill (1 s, doubling up to :data:`MAX_PAUSE_S`). Rows are published
oldest first in messages of at most :data:`ROWS_PER_MESSAGE`; the coverage moves only as far
as the broker acknowledged them, and after each request's rows the backfill waits for the
watermark to be saved (``checkpoint``) before it asks for more: a crash repeats at most one
request's rows. Beyond the meter's fine level the meter answers with its coarser (minute) rows,
which are published as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import structlog

from gateway.config import HistoryConfig
from gateway.core import Budget
from gateway.errors import MeterReplyTooLarge, MeterReportedError, MeterTimeout
from gateway.history.coverage import Coverage
from gateway.history.rows import HistoryRow, history_rows
from gateway.support import Wake

log = structlog.get_logger(__name__)

ROWS_PER_MESSAGE = 60
ACK_TIMEOUT_S = 30.0
MIN_SLOT_S = 0.05  # a slot shorter than this before the next poll is left alone
MAX_CONCURRENT = 8  # backfill requests in flight across the fleet at most (History's budget)
MAX_PAUSE_S = 300.0  # the longest wait after failed requests
MAX_ROWS_STRIKES = 3  # requests in a row failed with max-rows and fine without: it is refused

Checkpoint = Callable[[], Awaitable[None]]  # returns once the watermarks are saved


@runtime_checkable
class HistorySource(Protocol):
    """What the backfill needs of a meter client."""

    async def history(
        self, start: float, step: float, end: float, max_rows: int | None = None
    ) -> list[tuple[float, dict[str, int]]]: ...


class HistoryOutput(Protocol):
    """What the backfill needs of the MQTT output."""

    @property
    def connected(self) -> bool: ...

    @property
    def connects(self) -> int:
        """Sessions the broker granted so far (a change: the connection was lost)."""
        ...

    def publish_history(self, meter: str, rows: Sequence[HistoryRow]) -> asyncio.Future[None]:
        """Publish rows; the future resolves once the broker acknowledged them."""
        ...

    def on_state_confirmed(self, listener: Callable[[str, float], None]) -> None:
        """Call ``listener(meter, ts)`` for each live state the broker acknowledged."""
        ...


Annotate = Callable[[str, Sequence[HistoryRow]], list[HistoryRow]]


@dataclass(frozen=True, slots=True)
class Lane:
    """Where one meter's backfill requests go: its client, the lane it shares with the
    poller and the command router, and when the next poll is due (monotonic clock)."""

    source: HistorySource
    lock: asyncio.Lock
    next_poll: Callable[[], float | None]


@dataclass(slots=True)
class Backfill:
    """The coverage of one meter and what its backfill learnt about the meter."""

    meter: str
    cfg: HistoryConfig
    coverage: Coverage
    columns: tuple[tuple[str, str], ...] = ()  # (name, type code) of the latest reading
    online: bool = False
    polled: Wake = field(default_factory=Wake)  # set after a good poll
    # while a gap is open
    rows: int = 0  # rows asked for per request (halved after a timeout)
    max_rows_ok: bool = True  # False: the meter refuses max-rows (firmware before 4.7)
    max_rows_strikes: int = 0  # requests in a row that failed with max-rows, not without
    failures: int = 0  # failed requests in a row
    paused_until: float = 0.0  # clock() before which no request is made
    published_rows: int = 0
    given_up_s: int = 0
    epoch: int = 0  # coverage replaced (a replay after a lost connection): acks of before void

    def __post_init__(self) -> None:
        self.rows = self.rows or self.cfg.max_rows

    async def run(self, output: HistoryOutput, lanes: Callable[[str], Lane | None],
                  clock: Callable[[], float], ack_timeout_s: float = ACK_TIMEOUT_S,
                  gate: Budget | None = None,
                  checkpoint: Checkpoint | None = None, annotate: Annotate | None = None
                  ) -> None:
        """Fill the gaps, oldest first, in the slots after the polls; until cancelled."""
        while True:
            await self.polled.wait()
            self.polled.clear()
            while await self.fill_once(output, lanes(self.meter), clock, ack_timeout_s, gate,
                                       checkpoint, annotate):
                pass

    async def fill_once(self, output: HistoryOutput, lane: Lane | None,
                        clock: Callable[[], float], ack_timeout_s: float = ACK_TIMEOUT_S,
                        gate: Budget | None = None,
                        checkpoint: Checkpoint | None = None,
                        annotate: Annotate | None = None) -> bool:
        """One request and its publication, then (with ``checkpoint``) the saved watermark;
        True when another one may follow at once."""
        if not self.online or not output.connected or not self.columns or lane is None:
            return False
        lost = self.coverage.give_up(self.cfg.max_lookback_s)
        if lost:
            self.given_up_s += lost
            log.warning("history_gap_given_up", meter=self.meter, seconds=lost,
                        max_lookback_s=self.cfg.max_lookback_s)
        gap = self.coverage.gap()
        if gap is None or clock() < self.paused_until:
            return False
        after, before = gap
        step = self.cfg.step_s
        end = after + min(self.rows - 1, (before - 1 - after) // step) * step
        if gate is None:
            raw = await self._read(lane, clock, after, end)
        elif gate.locked():  # the fleet's backfill budget is in use: try after the next poll
            return False
        else:
            async with gate:
                raw = await self._read(lane, clock, after, end)
        if raw is None:
            return False
        rows = history_rows(raw, self.columns, after, end)
        if annotate is not None:
            rows = annotate(self.meter, rows)
        epoch = self.epoch
        acked = await self._publish(output, rows, ack_timeout_s)
        if epoch != self.epoch:  # the coverage went back meanwhile: these rows come again
            return True
        if acked < len(rows):
            if acked:
                self.coverage.filled(rows[acked - 1].ts)
                if checkpoint is not None:
                    await checkpoint()
            return False
        self.coverage.filled(end)
        log.debug("history_filled", meter=self.meter, after=after, through=end, rows=len(rows))
        if checkpoint is not None:
            await checkpoint()
        return True

    async def _read(self, lane: Lane, clock: Callable[[], float], after: int, end: int
                    ) -> list[tuple[float, dict[str, int]]] | None:
        """The stored rows from ``after`` to ``end`` within the slot before the next poll;
        ``None`` when there is no slot or the request failed (and was logged)."""
        step = self.cfg.step_s
        limit = (end - after) // step + 1
        for max_rows in (limit, None) if self.max_rows_ok else (None,):
            slot = _slot(lane, clock)
            if slot < MIN_SLOT_S:
                return None
            try:
                async with asyncio.timeout(slot), lane.lock:
                    raw = await lane.source.history(after, step, end, max_rows)
            except (TimeoutError, MeterTimeout):
                self.rows = max(2, self.rows // 2)
                log.info("history_request_slow", meter=self.meter, slot_s=round(slot, 3),
                         next_rows=self.rows)
                return None
            except MeterReplyTooLarge as exc:  # too many rows (or registers) in one reply
                if self.rows <= 2:
                    self._failed(clock, exc)
                    return None
                self.rows = max(2, self.rows // 2)
                log.info("history_reply_too_large", meter=self.meter, next_rows=self.rows)
                return None
            except MeterReportedError as exc:
                if max_rows is not None:
                    if refuses_max_rows(exc):  # firmware before 4.7 knows no max-rows
                        self._without_max_rows("refused", str(exc))
                    continue  # once more without it: the window bounds the rows
                self._failed(clock, exc)
                return None
            except Exception as exc:  # MeterError, or a client closed at shutdown
                self._failed(clock, exc)
                return None
            if max_rows is not None:
                self.max_rows_strikes = 0
            elif self.max_rows_ok:  # failed with max-rows, fine without it
                self.max_rows_strikes += 1
                if self.max_rows_strikes >= MAX_ROWS_STRIKES:
                    self._without_max_rows("failed_only_with_it", "")
            self.rows = min(self.cfg.max_rows, self.rows * 2)
            self.failures = 0
            return raw
        return None

    def _without_max_rows(self, reason: str, error: str) -> None:
        self.max_rows_ok = False
        log.info("history_without_max_rows", meter=self.meter, reason=reason,
                 error=error or None, strikes=self.max_rows_strikes)

    def _failed(self, clock: Callable[[], float], exc: Exception) -> None:
        self.failures += 1
        pause = min(MAX_PAUSE_S, 2.0 ** (self.failures - 1))
        self.paused_until = clock() + pause
        log.info("history_request_failed", meter=self.meter, error=repr(exc), retry_in_s=pause)

    async def _publish(self, output: HistoryOutput, rows: list[HistoryRow],
                       ack_timeout_s: float) -> int:
        """Publish in messages of at most ROWS_PER_MESSAGE, in order; the number of rows
        acknowledged (unconfirmed rows are published again later: at least once)."""
        acked = 0
        for i in range(0, len(rows), ROWS_PER_MESSAGE):
            chunk = rows[i:i + ROWS_PER_MESSAGE]
            ack = output.publish_history(self.meter, chunk)
            try:
                async with asyncio.timeout(ack_timeout_s):
                    await ack
            except Exception as exc:  # no acknowledgement in time, or the output gave up
                log.warning("history_unconfirmed", meter=self.meter, rows=len(chunk),
                            error=repr(exc))
                break
            acked += len(chunk)
            self.published_rows += len(chunk)
        return acked


def refuses_max_rows(exc: MeterReportedError) -> bool:
    """Whether the meter's own error (its ``error`` member, not an HTTP status) refuses the
    ``max-rows`` option."""
    if exc.field != "error":
        return False
    text = exc.message.lower()
    return "max-rows" in text or "invalid query option" in text


def _slot(lane: Lane, clock: Callable[[], float]) -> float:
    """Seconds a request may take before the next poll is due (less a margin)."""
    due = lane.next_poll()
    if due is None:
        return 0.0
    left = due - clock()
    return left - max(MIN_SLOT_S, 0.1 * left)
