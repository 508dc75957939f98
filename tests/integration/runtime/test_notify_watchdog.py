"""The watchdog of a running gateway (in this process, against the simulator): pings arrive on
the test's ``NOTIFY_SOCKET`` while the poller makes progress, stop while it is stuck (its
lane held by someone else for longer than three intervals) and resume once it moves again."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from gateway.config import (
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
)
from gateway.runtime import App
from gateway.runtime.notify import Notifier
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.lifecycle import registers_read
from tests.support.simulator import SIM_PASSWORD
from tests.support.waiting import async_wait_until


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    s.bind(path)
    s.setblocking(False)
    yield s, path
    s.close()


def drain(s: socket.socket) -> list[str]:
    """Every message queued on the socket now (sends from this process are synchronous)."""
    out = []
    while True:
        try:
            out.append(s.recv(4096).decode())
        except BlockingIOError:
            return out


def polling_only(state_dir: Path, url: str, poll_interval_s: float) -> Config:
    """One meter, no outputs: only the pollers and the watchdog."""
    meter = MeterConfig("main", url, "owner", Secret(SIM_PASSWORD),
                        poll_interval_s=poll_interval_s, timeout_s=poll_interval_s * 0.8)
    return Config(GatewaySection(id="wd", state_dir=str(state_dir), shutdown_timeout_s=5.0),
                  (meter,), MqttConfig(enabled=False), ModbusConfig(enabled=False),
                  HttpConfig(enabled=False))


async def test_a_stuck_poller_withholds_the_watchdog(
        sim_server: SimServer, sim_meter: SimMeter, tmp_path: Path,
        notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    s, path = notify_socket
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = polling_only(tmp_path / "state", sim_server.url_for(sim_meter), 0.3)
    app = App(config, notifier=Notifier(path))
    task = asyncio.create_task(app.run(), name="app")
    try:
        await async_wait_until(lambda: registers_read(app, "main"), what="a first poll")
        seen: list[str] = []
        await async_wait_until(lambda: seen.extend(drain(s)) or seen.count("WATCHDOG=1") >= 2,
                               what="watchdog pings")
        assert seen[0].split("\n")[0] == "READY=1"
        dog = app.watchdog
        assert dog is not None
        with structlog.testing.capture_logs() as logs:
            async with app.lanes["main"]:  # a command that never ends, as far as the poller sees
                await async_wait_until(lambda: dog.withheld >= 1, what="a withheld ping")
                drain(s)
                await async_wait_until(lambda: dog.withheld >= 4, what="more withheld ticks")
                assert "WATCHDOG=1" not in drain(s)
                assert app.stuck_pollers() == ["main"]
            resumed: list[str] = []
            await async_wait_until(lambda: resumed.extend(drain(s)) or "WATCHDOG=1" in resumed,
                                   what="pings again once the poller moves")
        events = [e["event"] for e in logs if e["event"].startswith("watchdog_")]
        assert events == ["watchdog_withheld", "watchdog_resumed"]
        assert app.stuck_pollers() == []
        drain(s)
    finally:
        app.request_stop()
        assert await asyncio.wait_for(task, 20) == 0
    assert any(m.startswith("STOPPING=1") for m in drain(s))
