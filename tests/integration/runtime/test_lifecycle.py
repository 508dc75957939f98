"""The gateway as a subprocess with every output on: systemd notifications on the test's
``NOTIFY_SOCKET`` (READY, WATCHDOG, STOPPING), and SIGTERM's ordered stop -- exit 0, the
broker sees ``offline``, the meter sees the logout -- within the shutdown timeout."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.lifecycle import (
    PASSWORD,
    MeterEntry,
    config_text,
    gateway_process,
)
from tests.support.mqtt import subscriber
from tests.support.waiting import wait_until


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0401", password=PASSWORD)
    with ThreadedSimServer([meter]) as server:
        yield meter, server.url_for(meter)


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_notifications_and_a_clean_sigterm(broker: Broker, topic_prefix: str, tmp_path: Path,
                                            sim: tuple[SimMeter, str]) -> None:
    meter, url = sim
    p = topic_prefix

    def text(modbus_port: int, http_port: int) -> str:
        return config_text(broker, p, tmp_path / "state", [MeterEntry("main", url, 1)],
                           modbus_port=modbus_port, http_port=http_port)

    with subscriber(broker, f"{p}/#") as sub, gateway_process(
            tmp_path, text, env={"WATCHDOG_USEC": "400000"}) as gw:
        ready = gw.wait_notification("READY=1")
        assert "STATUS=" in gw.notifications()[ready]
        sub.wait_for(f"{p}/main/availability", lambda m: m.payload == b"online")
        wait_until(lambda: readyz(gw.http_port) == 200, what="/readyz 200")
        first = gw.wait_notification("WATCHDOG=1", after=ready)
        gw.wait_notification("WATCHDOG=1", after=first + 1)
        with socket.create_connection(("127.0.0.1", gw.modbus_port), timeout=2):
            pass  # the Modbus server listens
        assert not meter.calls_to("/api/auth/logout")
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(20) == 0
        assert time.monotonic() - started < 8  # gateway.shutdown_timeout_s
        stopping = gw.wait_notification("STOPPING=1", after=ready)
        assert "WATCHDOG=1" not in gw.notifications()[stopping + 1:]
        sub.wait_for(f"{p}/bridge/state", lambda m: m.payload == b"offline")
        sub.wait_for(f"{p}/main/availability", lambda m: m.payload == b"offline")
        assert len(meter.calls_to("/api/auth/logout")) == 1
        assert gw.events("gateway_stopped")
        assert not gw.events("shutdown_timeout")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gw.modbus_port), timeout=2).close()


def test_an_invalid_config_at_start_exits_78(tmp_path: Path, broker: Broker,
                                             topic_prefix: str) -> None:
    def text(modbus_port: int, http_port: int) -> str:
        good = config_text(broker, topic_prefix, tmp_path / "state",
                           [MeterEntry("main", "http://127.0.0.1:9", 1)],
                           modbus_port=modbus_port, http_port=http_port)
        return good.replace("poll_interval_s: 0.5", "poll_interval_s: fast")

    with gateway_process(tmp_path, text) as gw:
        assert gw.proc.wait(20) == 78
        assert not gw.notifications()  # never READY
        problems = gw.log.read_text()
    assert "meters[0].poll_interval_s: must be a number" in problems


def test_a_second_sigterm_ends_a_slow_shutdown_at_once(own_broker: Broker, topic_prefix: str,
                                                       tmp_path: Path,
                                                       sim: tuple[SimMeter, str]) -> None:
    """With the broker frozen (SIGSTOP), the ordered stop waits for the broker to take the
    last messages; a second SIGTERM ends the process with exit code 1 long before the
    shutdown timeout, and the state files are written."""
    _, url = sim
    p = topic_prefix
    state = tmp_path / "state"

    def text(modbus_port: int, http_port: int) -> str:
        return config_text(own_broker, p, state, [MeterEntry("main", url, 1)],
                           modbus_port=modbus_port, http_port=http_port).replace(
            "shutdown_timeout_s: 8", "shutdown_timeout_s: 120")

    assert own_broker.process is not None
    with gateway_process(tmp_path, text) as gw:
        gw.wait_event("mqtt_connected")
        gw.wait_event("meter_online")
        own_broker.process.send_signal(signal.SIGSTOP)
        try:
            gw.proc.send_signal(signal.SIGTERM)
            gw.wait_event("gateway_stopping")
            gw.proc.send_signal(signal.SIGTERM)
            code = gw.proc.wait(30)  # a bound for the test, far below the 120 s timeout
        finally:
            own_broker.process.send_signal(signal.SIGCONT)
        assert code == 1
        assert gw.events("shutdown_forced")
        assert not gw.events("gateway_stopped")
        assert (state / "mqtt-retained.json").is_file()
        assert (state / "modbus" / "main.json").is_file()
        assert (state / "slugs" / "main.json").is_file()
