"""sd_notify over a datagram socket the test binds (a path and the abstract namespace), the
watchdog interval from systemd's environment, and the watchdog's progress rule."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from gateway.runtime.notify import Notifier, Watchdog, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    s.bind(path)
    s.settimeout(5)
    yield s, path
    s.close()


def fields(s: socket.socket) -> dict[str, str]:
    data = s.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_messages_arrive_on_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("2 of 2 meters online")
    assert fields(s) == {"READY": "1", "STATUS": "2 of 2 meters online"}
    assert n.watchdog()
    assert fields(s) == {"WATCHDOG": "1"}
    assert n.stopping()
    assert fields(s) == {"STOPPING": "1", "STATUS": "stopping"}
    assert n.status("line one\nline two")
    assert fields(s) == {"STATUS": "line one line two"}  # one message, one STATUS line


def test_reloading_carries_the_monotonic_time(listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(path).reloading()
    got = fields(s)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert got["RELOADING"] == "1"
    assert before <= int(got["MONOTONIC_USEC"]) <= after


def test_abstract_namespace_socket() -> None:
    name = f"egauge-gateway-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        assert Notifier("@" + name).ready()
        assert fields(s) == {"READY": "1"}


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert not n.ready()
    assert not n.watchdog()


def test_an_unreachable_socket_is_logged_once(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "nobody-listens"))
    with structlog.testing.capture_logs() as logs:
        assert not n.watchdog()
        assert not n.watchdog()
    failed = [e for e in logs if e["event"] == "notify_failed"]
    assert len(failed) == 1
    assert failed[0]["socket"].endswith("nobody-listens")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env, pid=4242) == expected


def test_the_watchdog_pings_only_while_nothing_is_stuck(
        listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    stuck: list[str] = []
    dog = Watchdog(Notifier(path), 0.5, lambda: list(stuck))
    assert dog.tick()
    assert fields(s) == {"WATCHDOG": "1"}
    stuck.append("main")
    with structlog.testing.capture_logs() as logs:
        assert not dog.tick()
        assert not dog.tick()
        stuck.clear()
        assert dog.tick()
    assert [e["event"] for e in logs] == ["watchdog_withheld", "watchdog_resumed"]
    assert logs[0]["stuck"] == ["main"]
    assert fields(s) == {"WATCHDOG": "1"}
    s.setblocking(False)  # sendto is synchronous: anything sent is queued already
    with pytest.raises(BlockingIOError):
        s.recv(4096)  # the withheld ticks sent nothing
    assert (dog.pings, dog.withheld) == (2, 2)


def test_a_receiver_that_does_not_read_never_blocks_the_sender(
        listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    n = Notifier(path)
    with structlog.testing.capture_logs() as logs:
        results = [n.watchdog() for _ in range(5000)]  # far beyond the socket's queue
    assert results[0]
    assert not results[-1]
    assert [e["event"] for e in logs] == ["notify_failed"]
