"""The loop watchdog of ``python -m gateway run`` (a subprocess with every output on): a
component that blocks the event loop makes the process log ``event_loop_stalled`` with the
stack of the blocked thread and exit 1, so that systemd, Docker or Kubernetes start it again;
a shutdown that is slow but keeps the loop turning ends with 0 and no stall. In this process
(``App`` in a test) there is no loop watchdog unless the test asks for one.

The component is added by a ``sitecustomize`` module on the subprocess's ``PYTHONPATH``,
through the app's public ``extensions``: the process under test is the real command line."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.runtime import App, Component
from gateway.runtime.stall import Stall
from gateway.secret import Secret
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.lifecycle import (
    PASSWORD,
    ROOT,
    MeterEntry,
    config_text,
    gateway_process,
)
from tests.support.mqtt import gateway_config
from tests.support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.integration

HOOK = '''
import asyncio
import os
import time

from gateway.runtime import App, Component

MODE = os.environ["LOOP_TEST_MODE"]


async def block_the_loop(app: App) -> None:
    deadline = time.monotonic() + 20
    while app.hub.meter("main").reading is None:  # started and polling first
        if time.monotonic() > deadline:
            raise RuntimeError("the meter was never polled")
        await asyncio.sleep(0.05)
    time.sleep(120)  # a blocking call in a coroutine: the loop stands still


async def slow_stop() -> None:
    await asyncio.sleep(3.0)  # slow, but the loop keeps turning


def add_component(app: App) -> None:
    if MODE == "block":
        app.add(Component("blocker", serve=lambda: block_the_loop(app)))
    else:
        app.add(Component("slow-stop", stop=slow_stop))


_init = App.__init__


def __init__(self, config, **kw):
    kw["extensions"] = (*kw.get("extensions", ()), add_component)
    _init(self, config, **kw)


App.__init__ = __init__
'''


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0402", password=PASSWORD)
    with ThreadedSimServer([meter]) as server:
        yield meter, server.url_for(meter)


def hooked_env(tmp_path: Path, mode: str) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(HOOK))
    return {"PYTHONPATH": f"{hook}:{ROOT}", "LOOP_TEST_MODE": mode}


def stall_config(broker: Broker, prefix: str, tmp_path: Path, url: str, limit_s: float):
    def text(modbus_port: int, http_port: int) -> str:
        base = config_text(broker, prefix, tmp_path / "state", [MeterEntry("main", url, 1)],
                           modbus_port=modbus_port, http_port=http_port)
        assert "shutdown_timeout_s: 8}" in base
        return base.replace("shutdown_timeout_s: 8}",
                            f"shutdown_timeout_s: 8, loop_stall_s: {limit_s}}}")
    return text


def test_a_blocked_event_loop_ends_the_process_with_the_stall_logged(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    _, url = sim
    text = stall_config(broker, topic_prefix, tmp_path, url, 2)
    with gateway_process(tmp_path, text, env=hooked_env(tmp_path, "block")) as gw:
        gw.wait_event("gateway_started")
        code = gw.proc.wait(30)  # the hook blocks for 120 s: only the watchdog ends it
        assert code == 1
        stall = gw.wait_event("event_loop_stalled")
    assert stall["level"] == "critical"
    assert stall["limit_s"] == 2
    assert stall["stalled_s"] >= 2
    assert stall["thread"] == "MainThread"
    assert stall["stack"][-1].endswith("time.sleep(120)  # a blocking call in a coroutine: "
                                       "the loop stands still")
    assert any("in block_the_loop" in line for line in stall["stack"])
    assert not gw.events("gateway_stopped")  # no ordered stop: it could not run


def test_a_slow_shutdown_that_keeps_the_loop_turning_is_no_stall(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    _, url = sim
    text = stall_config(broker, topic_prefix, tmp_path, url, 1)
    with gateway_process(tmp_path, text, env=hooked_env(tmp_path, "slow-stop")) as gw:
        gw.wait_event("meter_online")
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(20) == 0
        assert time.monotonic() - started >= 3  # the slow stop ran: three limits long
        wait_until(lambda: gw.events("gateway_stopped"), what="gateway_stopped")
        assert not gw.events("event_loop_stalled")


async def test_an_app_in_a_test_has_no_loop_watchdog_unless_it_asks(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    _, url = sim
    base = gateway_config(broker, topic_prefix, tmp_path / "state", [("main", url)])
    config = replace(base, gateway=replace(base.gateway, loop_stall_s=1.0))
    config = replace(config, meters=tuple(replace(m, password=Secret(PASSWORD))
                                          for m in config.meters))
    assert App(config).loop_watchdog is None

    seen: list[Stall] = []

    async def block_once() -> None:
        await async_wait_until(lambda: app.loop_watchdog is not None, what="the watchdog")
        time.sleep(3)  # the loop stands still for three limits
        await asyncio.Event().wait()

    app = App(config, on_stall=seen.append,
              extensions=[lambda a: a.add(Component("blocker", serve=block_once))])
    task = asyncio.create_task(app.run(), name="app")
    await async_wait_until(lambda: seen, timeout=15, what="the stall reported")
    app.request_stop()
    assert await asyncio.wait_for(task, 20) == 0  # the injected action did not end anything
    assert seen[0].stalled_s >= 1
    assert any("in block_once" in line for line in seen[0].stack)
    assert app.loop_watchdog is not None
    assert not app.loop_watchdog.running  # stopped with the app
