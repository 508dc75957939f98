"""A crash still leaves the state files behind: an exception escaping a component ends the
gateway with exit code 1, and the Modbus pins, the slug pins, the retained-topic ledger and
the history watermark are on disk. Their periodic writers are held back here, so only the
crash path can have written them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from gateway.config import ModbusConfig
from gateway.modbus import ModbusOutput
from gateway.modbus.pins import PinStore
from gateway.mqtt import RegisterIdentities
from gateway.runtime import App, Component
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker, free_port
from tests.support.mqtt import gateway_config
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0601")
    with ThreadedSimServer([meter]) as server:
        yield meter, server.url_for(meter)


@pytest.fixture
def no_periodic_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger's delayed write, the history's periodic save and the pin writer never get
    their turn within a test."""
    monkeypatch.setattr("gateway.mqtt.ledger.SAVE_DELAY_S", 3600.0)
    monkeypatch.setattr("gateway.history.service.PERSIST_S", 3600.0)

    async def idle(self: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(ModbusOutput, "serve", idle)
    monkeypatch.setattr(RegisterIdentities, "serve", idle)


@pytest.mark.usefixtures("no_periodic_writes")
async def test_a_crashing_component_still_writes_the_state_files(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    meter, url = sim
    state = tmp_path / "state"
    config = dataclasses.replace(gateway_config(broker, topic_prefix, state, [("main", url)]),
                                 modbus=ModbusConfig(host="127.0.0.1", port=free_port()))
    crash = asyncio.Event()

    async def crash_on_demand() -> None:
        await crash.wait()
        raise RuntimeError("component exploded")

    def extend(a: App) -> None:
        a.add(Component("fragile", serve=crash_on_demand))

    app = App(config, extensions=[extend])
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(app.run(), name="app")
        history = await async_wait_until(lambda: app.history, what="the history service")
        assert history is not None
        await async_wait_until(lambda: app.history.watermark("main") if app.history else None,
                               what="a state the broker acknowledged")
        assert app.modbus is not None
        await async_wait_until(lambda: app.modbus.layout("main").points if app.modbus else None,
                               what="the registers pinned")
        for name in ("modbus/main.json", "slugs/main.json", "mqtt-retained.json",
                     "history.json"):
            assert not (state / name).exists(), name  # nothing periodic wrote them
        crash.set()
        assert await asyncio.wait_for(task, 20) == 1
    assert any(e["event"] == "gateway_crashed" and "component exploded" in e["error"]
               for e in logs)
    pins = PinStore(state).load("main")
    assert {r.name for r in meter.registers} <= {name for name, _ in pins.items()}
    slugs = json.loads((state / "slugs" / "main.json").read_text())["pins"]
    assert {r.name for r in meter.registers} <= set(slugs)
    ledger = json.loads((state / "mqtt-retained.json").read_text())
    assert f"{topic_prefix}/main/availability" in ledger["meters"]["main"]["topics"]
    marks = json.loads((state / "history.json").read_text())
    assert marks["meters"]["main"]["published_until"] >= int(meter.epoch)
