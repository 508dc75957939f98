"""History (gap tracker + backfill) against a fake output and a fake meter database: which
requests it makes, when it makes none, what it publishes and what it remembers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import structlog

from gateway.config import HistoryConfig
from gateway.errors import MeterReplyTooLarge, MeterReportedError, MeterUnavailable
from gateway.history import STATE_FILE, History, HistoryRow, Lane
from gateway.model import Availability, Reading, RegisterValue
from tests.support.waiting import async_wait_until

WATTS = 1000  # the fake meter's Grid register draws this much, always


class FakeOutput:
    def __init__(self) -> None:
        self.connected = True
        self.connects = 1  # sessions so far
        self.hold = False  # True: publications are acknowledged only by ``release``
        self.held: list[asyncio.Future[None]] = []
        self.acks_left: int | None = None  # acknowledge only this many more messages
        self.published: list[tuple[str, list[HistoryRow]]] = []
        self._listeners: list[Callable[[str, float], None]] = []

    def on_state_confirmed(self, listener: Callable[[str, float], None]) -> None:
        self._listeners.append(listener)

    def confirm(self, meter: str, *seconds: int) -> None:
        for t in seconds:
            for listener in self._listeners:
                listener(meter, t + 0.000420096)

    def publish_history(self, meter: str, rows: list[HistoryRow]) -> asyncio.Future[None]:
        self.published.append((meter, list(rows)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.acks_left is not None:
            self.hold = self.acks_left <= 0
            self.acks_left -= 1
        if self.hold:
            self.held.append(done)
        else:
            done.set_result(None)
        return done

    def release(self) -> None:
        """Acknowledge the held publications (a late PUBACK)."""
        self.hold = False
        for done in self.held:
            if not done.done():
                done.set_result(None)
        self.held.clear()

    def seconds(self) -> list[int]:
        return [r.ts for _, rows in self.published for r in rows]


class FakeDatabase:
    """1-second rows of one register, as a meter answers ``time=start:step:end``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[float, float, float, int | None]] = []
        self.delay_s = delay_s
        self.refuse: Exception | None = None  # raised for every request
        self.refuse_max_rows = False  # an old firmware: max-rows is an invalid option
        self.refusal = "Invalid query option: max-rows."
        self.fail_with_max_rows = 0  # the next requests with max-rows get an HTTP 500
        self.pattern: list[bool] = []  # or: per request with max-rows, whether it fails
        self.saves: list[dict[str, int]] | None = None  # the saved watermarks at each answer
        self.saves_dir = Path()
        self.too_large_above: int | None = None  # a window of more rows: a reply too large

    async def history(self, start: float, step: float, end: float,
                      max_rows: int | None = None) -> list[tuple[float, dict[str, int]]]:
        self.calls.append((start, step, end, max_rows))
        if self.refuse is not None:
            raise self.refuse
        if self.refuse_max_rows and max_rows is not None:  # an error member, as the client
            raise MeterReportedError("m", f"{self.refusal} (GET /register)", field="error")
        if max_rows is not None and (self.fail_with_max_rows or self.pattern):
            fails = self.pattern.pop(0) if self.pattern else True
            self.fail_with_max_rows = max(0, self.fail_with_max_rows - 1)
            if fails:
                raise MeterReportedError("m", "HTTP 500 (GET /register)", field="status")
        if self.too_large_above is not None and (end - start) / step + 1 > self.too_large_above:
            raise MeterReplyTooLarge("m", "the reply to GET /register is larger than 33554432 "
                                     "bytes (cut off there)", field="body")
        if self.saves is not None:
            self.saves.append(saved(self.saves_dir) if (self.saves_dir / STATE_FILE).exists()
                              else {})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        times = []
        t = end
        while t >= start and (max_rows is None or len(times) < max_rows):
            times.append(t)
            t -= step
        return [(float(t), {"Grid": WATTS * int(t)}) for t in sorted(times)]


def reading(t: float) -> Reading:
    return Reading("m", t, (RegisterValue("Grid", "P", "W", float(WATTS), 0.0, "kWh", 0),))


@contextlib.asynccontextmanager
async def running(history: History) -> AsyncIterator[History]:
    await history.start()
    task = asyncio.create_task(history.serve(), name="history-under-test")
    await asyncio.sleep(0)  # serving: checkpoints go to its writer
    try:
        yield history
    finally:
        await history.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(tmp_path: Path, output: FakeOutput, db: FakeDatabase, *, slot_s: float = 10.0,
         ack_timeout_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
         max_concurrent: int = 8, **cfg: int) -> History:
    lock = asyncio.Lock()
    return History(HistoryConfig(**cfg), ["m"], output,
                   lambda meter: Lane(db, lock, lambda: clock() + slot_s),
                   tmp_path, ack_timeout_s=ack_timeout_s, clock=clock,
                   max_concurrent=max_concurrent)


def gap(h: History, out: FakeOutput, *seconds: int, online: bool = True) -> None:
    """Meter ``m`` online (or not) and live states of these seconds acknowledged."""
    h.on_availability(Availability("m", online, 0.0))
    out.confirm("m", *seconds)


async def poll(h: History, t: float) -> None:
    """A good poll at meter time ``t``; returns once the backfill has taken it up."""
    h.on_reading(reading(t))
    state = h.backfill("m")
    assert state is not None
    await async_wait_until(lambda: not state.polled.is_set(), what="the backfill woken")


def saved(tmp_path: Path) -> dict[str, int]:
    data = json.loads((tmp_path / STATE_FILE).read_text())
    return {m: v["published_until"] for m, v in data["meters"].items()}


async def test_a_gap_is_read_in_max_rows_chunks_oldest_first_and_remembered(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    async with running(make(tmp_path, out, db, max_rows=4)) as h:
        gap(h, out, 100, 101, 110, 111)
        await poll(h, 111.0004)
        await async_wait_until(lambda: h.watermark("m") == 111, what="the gap filled")
    assert out.seconds() == list(range(102, 110))
    # each request names its base row (the newest published) and at most max-rows rows
    assert db.calls == [(101, 1, 104, 4), (104, 1, 107, 4), (107, 1, 109, 3)]
    rows = [r for _, chunk in out.published for r in chunk]
    assert all(r.dt == 1 and r.values[0].rate == WATTS for r in rows)
    assert rows[0].values[0].cumulative == pytest.approx(WATTS * 102 / 3_600_000)
    assert saved(tmp_path) == {"m": 111}


async def test_a_restart_resumes_after_the_saved_watermark(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps({"meters": {"m": {"published_until": 500}}}))
    out, db = FakeOutput(), FakeDatabase()
    async with running(make(tmp_path, out, db)) as h:
        assert h.watermark("m") == 500
        gap(h, out, 505)
        await poll(h, 505.0004)
        await async_wait_until(lambda: h.watermark("m") == 505, what="the gap filled")
    assert out.seconds() == [501, 502, 503, 504]
    assert saved(tmp_path) == {"m": 505}


@pytest.mark.parametrize("blocker", ["broker_away", "meter_offline", "no_slot"])
async def test_no_request_without_broker_meter_or_time_before_the_next_poll(
        tmp_path: Path, blocker: str) -> None:
    out, db = FakeOutput(), FakeDatabase()
    out.connected = blocker != "broker_away"
    slot_s = 0.01 if blocker == "no_slot" else 10.0
    async with running(make(tmp_path, out, db, slot_s=slot_s)) as h:
        gap(h, out, 100, 110, online=blocker != "meter_offline")
        for _ in range(5):
            await poll(h, 110.0)
        assert db.calls == []
        assert out.published == []
        assert h.watermark("m") == 100


async def test_no_request_while_the_fleet_wide_backfill_budget_is_in_use(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    async with running(make(tmp_path, out, db, max_concurrent=0)) as h:  # budget taken
        gap(h, out, 100, 110)
        for _ in range(5):
            await poll(h, 110.0)
        assert db.calls == []
        assert h.watermark("m") == 100


async def test_a_request_that_outlasts_its_slot_is_cut_and_the_next_asks_fewer_rows(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase(delay_s=0.5)
    async with running(make(tmp_path, out, db, slot_s=0.2, max_rows=40)) as h:
        gap(h, out, 100, 200)
        with structlog.testing.capture_logs() as logs:
            await poll(h, 200.0)
            await async_wait_until(lambda: any(e["event"] == "history_request_slow"
                                               for e in logs), what="the slow request")
            await poll(h, 200.0)
            await async_wait_until(lambda: len(db.calls) == 2, what="a second request")
    assert [c[3] for c in db.calls] == [40, 20]
    assert out.published == []
    assert h.watermark("m") == 100


async def test_unacknowledged_rows_do_not_move_the_watermark_and_are_sent_again(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    out.hold = True
    async with running(make(tmp_path, out, db, ack_timeout_s=0.05)) as h:
        gap(h, out, 100, 104)
        with structlog.testing.capture_logs() as logs:
            await poll(h, 104.0)
            await async_wait_until(lambda: any(e["event"] == "history_unconfirmed"
                                               for e in logs), what="an unconfirmed message")
        assert len(out.published) == 1
        assert h.watermark("m") == 100
        out.hold = False
        await poll(h, 104.0)
        await async_wait_until(lambda: h.watermark("m") == 104, what="the acknowledged rows")
    assert out.seconds() == [101, 102, 103, 101, 102, 103]  # at least once


async def test_a_gap_beyond_the_look_back_is_cut(tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    async with running(make(tmp_path, out, db, max_lookback_s=60, max_rows=100)) as h:
        gap(h, out, 100, 1000)
        with structlog.testing.capture_logs() as logs:
            await poll(h, 1000.0)
            await async_wait_until(lambda: h.watermark("m") == 1000, what="the gap filled")
    assert out.seconds() == list(range(941, 1000))
    assert h.given_up_s == 840
    assert [e["seconds"] for e in logs if e["event"] == "history_gap_given_up"] == [840]


async def test_an_unreadable_state_file_is_reported_and_history_starts_afresh(
        tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    out, db = FakeOutput(), FakeDatabase()
    with structlog.testing.capture_logs() as logs:
        async with running(make(tmp_path, out, db)) as h:
            assert h.watermark("m") is None
    assert any(e["event"] == "history_state_unreadable" for e in logs)


async def test_meters_added_by_a_reload_are_tracked_and_removed_ones_forgotten(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    async with running(make(tmp_path, out, db)) as h:
        out.confirm("m", 100)
        h.set_meters(["n"])
        out.confirm("m", 101)
        out.confirm("n", 7)
        assert (h.watermark("m"), h.watermark("n")) == (None, 7)
    assert saved(tmp_path) == {"m": 100, "n": 7}


@pytest.mark.parametrize("refusal", ["Invalid query option: max-rows.",
                                     "Invalid query option"])
async def test_a_meter_that_refuses_max_rows_is_asked_without_it_from_then_on(
        tmp_path: Path, refusal: str) -> None:
    out, db = FakeOutput(), FakeDatabase()
    db.refuse_max_rows = True
    db.refusal = refusal
    with structlog.testing.capture_logs() as logs:
        async with running(make(tmp_path, out, db, max_rows=3)) as h:
            gap(h, out, 100, 106)
            await poll(h, 106.0)
            await async_wait_until(lambda: h.watermark("m") == 106, what="the gap filled")
    assert db.calls == [(100, 1, 102, 3), (100, 1, 102, None), (102, 1, 104, None),
                        (104, 1, 105, None)]
    assert out.seconds() == [101, 102, 103, 104, 105]
    off = [e for e in logs if e["event"] == "history_without_max_rows"]
    assert [e["reason"] for e in off] == ["refused"]
    assert refusal in off[0]["error"]


async def test_a_transient_http_500_costs_one_request_without_max_rows_nothing_more(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    db.fail_with_max_rows = 1
    with structlog.testing.capture_logs() as logs:
        async with running(make(tmp_path, out, db, max_rows=3)) as h:
            gap(h, out, 100, 110)
            await poll(h, 110.0)
            await async_wait_until(lambda: h.watermark("m") == 110, what="the gap filled")
            state = h.backfill("m")
            assert state is not None
            assert state.max_rows_ok
    assert db.calls == [(100, 1, 102, 3), (100, 1, 102, None), (102, 1, 104, 3),
                        (104, 1, 106, 3), (106, 1, 108, 3), (108, 1, 109, 2)]
    assert out.seconds() == list(range(101, 110))
    assert not [e for e in logs if e["event"] == "history_without_max_rows"]


async def test_a_meter_that_fails_only_with_max_rows_three_times_in_a_row_loses_it(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    db.fail_with_max_rows = 1000  # every request with it: HTTP 500; without it: fine
    with structlog.testing.capture_logs() as logs:
        async with running(make(tmp_path, out, db, max_rows=3)) as h:
            gap(h, out, 100, 110)
            await poll(h, 110.0)
            await async_wait_until(lambda: h.watermark("m") == 110, what="the gap filled")
    assert [c[3] for c in db.calls] == [3, None, 3, None, 3, None, None, None]
    assert out.seconds() == list(range(101, 110))
    off = [e for e in logs if e["event"] == "history_without_max_rows"]
    assert [(e["reason"], e["strikes"]) for e in off] == [("failed_only_with_it", 3)]


async def test_strikes_are_only_counted_in_a_row(tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    db.pattern = [True, True, False] * 3  # never three failures in a row
    with structlog.testing.capture_logs() as logs:
        async with running(make(tmp_path, out, db, max_rows=3)) as h:
            gap(h, out, 100, 120)
            await poll(h, 120.0)
            await async_wait_until(lambda: h.watermark("m") == 120, what="the gap filled")
            state = h.backfill("m")
            assert state is not None
            assert state.max_rows_ok
    assert [c[3] for c in db.calls][:12] == [3, None, 3, None, 3] * 2 + [3, None]
    assert not [e for e in logs if e["event"] == "history_without_max_rows"]
    assert out.seconds() == list(range(101, 120))


async def test_a_failing_meter_pauses_the_backfill(tmp_path: Path) -> None:
    now = [1000.0]
    out, db = FakeOutput(), FakeDatabase()
    db.refuse = MeterUnavailable("m", "connection refused")
    async with running(make(tmp_path, out, db, clock=lambda: now[0])) as h:
        gap(h, out, 100, 110)
        await poll(h, 110.0)
        await async_wait_until(lambda: len(db.calls) == 1, what="a first request")
        for _ in range(3):  # polls within the pause: no request
            await poll(h, 110.0)
        assert len(db.calls) == 1
        now[0] += 1.5
        db.refuse = None
        await poll(h, 111.0)
        await async_wait_until(lambda: h.watermark("m") == 110, what="the gap filled")
    assert out.seconds() == list(range(101, 110))


async def test_rows_are_acknowledged_message_by_message(tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    out.acks_left = 1  # the first message of 60 rows is taken, the second never
    async with running(make(tmp_path, out, db, max_rows=200, ack_timeout_s=0.05)) as h:
        gap(h, out, 100, 200)
        await poll(h, 200.0)
        await async_wait_until(lambda: len(out.published) == 2, what="two messages")
        await async_wait_until(lambda: h.watermark("m") == 160, what="the first 60 rows")
    assert [len(rows) for _, rows in out.published] == [60, 39]


async def test_the_watermark_is_saved_after_each_request_before_the_next(tmp_path: Path) -> None:
    """A crash at any moment repeats at most the rows of the request in flight."""
    out, db = FakeOutput(), FakeDatabase()
    db.saves, db.saves_dir = [], tmp_path
    async with running(make(tmp_path, out, db, max_rows=50)) as h:
        gap(h, out, 100, 1000)
        await poll(h, 1000.0)
        await async_wait_until(lambda: h.watermark("m") == 1000, what="the gap filled")
    assert len(db.calls) == 19  # 899 rows, 49 new ones a request
    for (after, *_), on_disk in list(zip(db.calls, db.saves, strict=True))[1:]:
        assert on_disk == {"m": after}  # the chunk before it is on disk
    assert saved(tmp_path) == {"m": 1000}


async def test_checkpoints_of_many_meters_share_their_writes(tmp_path: Path) -> None:
    out = FakeOutput()
    meters = [f"m{i}" for i in range(20)]
    dbs = {m: FakeDatabase() for m in meters}
    for db in dbs.values():
        db.saves, db.saves_dir = [], tmp_path
    locks = {m: asyncio.Lock() for m in meters}
    h = History(HistoryConfig(max_rows=10), meters, out,
                lambda m: Lane(dbs[m], locks[m], lambda: time.monotonic() + 10), tmp_path)
    async with running(h):
        for m in meters:
            h.on_availability(Availability(m, True, 0.0))
            out.confirm(m, 100, 300)
            h.on_reading(Reading(m, 300.0, reading(300.0).registers))
        await async_wait_until(lambda: all(h.watermark(m) == 300 for m in meters),
                               what="every gap filled")
        chunks = sum(len(db.calls) for db in dbs.values())
        assert chunks == 20 * 23  # 199 rows, 9 new ones a request (its base and 9 more)
        assert h.state_writes < chunks  # one write serves the meters waiting for it
    assert saved(tmp_path) == dict.fromkeys(meters, 300)
    for m, db in dbs.items():  # and each meter's next request waited for its own chunk
        assert db.saves is not None
        for (after, *_), on_disk in list(zip(db.calls, db.saves, strict=True))[1:]:
            assert on_disk.get(m) == after


async def test_live_seconds_beyond_a_gap_are_saved_and_never_sent_again_after_a_restart(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    async with running(make(tmp_path, out, db, max_rows=5)) as h:
        gap(h, out, 100, *range(110, 121))  # a gap, then live seconds 110-120
        await h.checkpoint()
        data = json.loads((tmp_path / STATE_FILE).read_text())
        assert data["meters"]["m"] == {"published_until": 100, "published_ranges": [[110, 120]]}
    # a crash before the gap was filled; the next run knows 110-120 are on the broker
    out2, db2 = FakeOutput(), FakeDatabase()
    async with running(make(tmp_path, out2, db2, max_rows=5)) as h2:
        assert h2.watermark("m") == 100
        gap(h2, out2, 130)
        await poll(h2, 130.0)
        await async_wait_until(lambda: h2.watermark("m") == 130, what="both gaps filled")
    assert out2.seconds() == [*range(101, 110), *range(121, 130)]
    assert saved(tmp_path) == {"m": 130}


async def test_a_reply_too_large_halves_the_rows_asked_for_next(tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    db.too_large_above = 10
    async with running(make(tmp_path, out, db, max_rows=40)) as h:
        gap(h, out, 100, 200)
        for _ in range(3):
            await poll(h, 200.0)
        await async_wait_until(lambda: out.published, what="rows published")
    assert [c[3] for c in db.calls[:3]] == [40, 20, 10]  # then small enough
    assert out.seconds()[:9] == list(range(101, 110))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def live(h: History, out: FakeOutput, clock: Clock, first: int, last: int) -> None:
    """One live second acknowledged per clock second, each followed by a turn of the writer."""
    for t in range(first, last + 1):
        clock.now += 1.0
        out.confirm("m", t)
        await h.checkpoint()


@pytest.mark.parametrize("loss", ["seen_down", "back_within_a_turn"])
async def test_after_a_lost_connection_the_seconds_of_replay_s_before_it_come_again(
        tmp_path: Path, loss: str) -> None:
    """The broker may have lost what it acknowledged since its last save: the coverage goes
    back replay_s before the loss, whether a turn saw the connection down or only a new
    session number."""
    out, db, clock = FakeOutput(), FakeDatabase(), Clock()
    async with running(make(tmp_path, out, db, clock=clock, replay_s=5)) as h:
        h.on_availability(Availability("m", True, 0.0))
        await live(h, out, clock, 100, 120)
        assert h.watermark("m") == 120
        assert not out.published
        out.connected = loss == "back_within_a_turn"
        out.connects = 2
        clock.now += 1.0
        with structlog.testing.capture_logs() as logs:
            await h.checkpoint()
        assert [e["replay_s"] for e in logs if e["event"] == "history_replay"] == [5]
        assert h.watermark("m") == 115  # what was on the broker 5 s before the last good turn
        assert saved(tmp_path) == {"m": 115}
        out.connected = True
        out.confirm("m", 125)
        await poll(h, 125.0)
        await async_wait_until(lambda: h.watermark("m") == 125, what="the replay published")
    assert out.seconds() == list(range(116, 125))


async def test_without_replay_a_lost_connection_keeps_the_coverage(tmp_path: Path) -> None:
    out, db, clock = FakeOutput(), FakeDatabase(), Clock()
    async with running(make(tmp_path, out, db, clock=clock, replay_s=0)) as h:
        h.on_availability(Availability("m", True, 0.0))
        await live(h, out, clock, 100, 120)
        out.connected, out.connects = False, 2
        clock.now += 1.0
        await h.checkpoint()
        assert h.watermark("m") == 120
        out.connected = True
        out.confirm("m", 125)
        await poll(h, 125.0)
        await async_wait_until(lambda: h.watermark("m") == 125, what="the gap filled")
    assert out.seconds() == list(range(121, 125))
    assert h.replays == 0


async def test_an_acknowledgement_that_arrives_after_a_replay_does_not_move_the_watermark(
        tmp_path: Path) -> None:
    """Rows in flight when the connection went: their late PUBACK must not cover the seconds
    the replay reopened; they are published again with the rest."""
    out, db, clock = FakeOutput(), FakeDatabase(), Clock()
    async with running(make(tmp_path, out, db, clock=clock, replay_s=5)) as h:
        h.on_availability(Availability("m", True, 0.0))
        await live(h, out, clock, 100, 110)
        out.confirm("m", 200)  # a gap of 111 .. 199, filled in flight
        out.hold = True
        await poll(h, 200.0)
        await async_wait_until(lambda: out.held, what="the backfill's rows in flight")
        out.connected, out.connects = False, 2
        clock.now += 1.0
        await h.checkpoint()
        assert h.watermark("m") == 105
        out.connected = True
        out.release()
        out.confirm("m", 201)  # the next live state after the reconnect
        await poll(h, 201.0)
        await async_wait_until(lambda: h.watermark("m") == 201, what="the gap filled again")
    seconds = out.seconds()
    assert seconds[:89] == list(range(111, 200))  # the request in flight when it went
    assert seconds[89:] == list(range(106, 201))  # and from the replay's watermark again


async def test_a_poll_wakes_the_backfill_only_while_the_budget_allows_a_request(
        tmp_path: Path) -> None:
    out, db = FakeOutput(), FakeDatabase()
    h = make(tmp_path, out, db, max_concurrent=1)
    await h.start()
    gap(h, out, 100, 110)
    state = h.backfill("m")
    assert state is not None
    async with h.budget:  # the fleet's one request is taken
        h.on_reading(reading(110.0))
        assert not state.polled.is_set()
    h.on_reading(reading(111.0))
    assert state.polled.is_set()
    await h.stop()
