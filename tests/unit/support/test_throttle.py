"""LogThrottle: the first occurrence at once, the rest counted and logged once per interval."""

from __future__ import annotations

import structlog

from gateway.support import LogThrottle
from tests.support.waiting import async_wait_until


def test_one_line_per_interval_with_the_count_of_what_it_stands_for() -> None:
    now = [0.0]
    throttle = LogThrottle(interval_s=60, clock=lambda: now[0])
    with structlog.testing.capture_logs() as logs:
        assert throttle.emit("info", "bad_frame", peer="a")
        for i in range(9):
            now[0] += 1
            assert not throttle.emit("info", "bad_frame", peer=f"b{i}")
        assert throttle.emit("warning", "refused", peer="c")  # another event: its own budget
        now[0] = 61.0
        assert throttle.emit("info", "bad_frame", peer="d")
        throttle.flush()  # nothing pending
    assert [(e["event"], e["count"], e["peer"], e["log_level"]) for e in logs] == [
        ("bad_frame", 1, "a", "info"), ("refused", 1, "c", "warning"),
        ("bad_frame", 10, "d", "info")]  # nine counted, and this one


def test_flush_logs_what_is_pending_with_the_last_keys() -> None:
    throttle = LogThrottle(interval_s=3600)
    with structlog.testing.capture_logs() as logs:
        for i in range(5):
            throttle.emit("info", "bad_frame", peer=str(i))
        throttle.flush()
        throttle.flush()
    assert [(e["count"], e["peer"]) for e in logs] == [(1, "0"), (4, "4")]


async def test_in_a_loop_the_count_comes_when_the_interval_ends() -> None:
    throttle = LogThrottle(interval_s=0.2)
    with structlog.testing.capture_logs() as logs:
        for i in range(20):
            throttle.emit("info", "bad_frame", n=i)
        assert [e["count"] for e in logs] == [1]
        await async_wait_until(lambda: len(logs) == 2, what="the pending count logged")
    assert (logs[1]["count"], logs[1]["n"]) == (19, 19)
