"""App lifecycle in this process: start-up failure (exit 3, also for a damaged pin file),
crash (exit 1), clean stop (0)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import structlog

from gateway.config import (
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
)
from gateway.runtime import App, Component
from gateway.secret import Secret


def bare_config(tmp_path: Path) -> Config:
    return Config(GatewaySection(id="t", state_dir=str(tmp_path / "state"),
                                 shutdown_timeout_s=2.0),
                  (), MqttConfig(enabled=False), ModbusConfig(enabled=False),
                  HttpConfig(enabled=False))


async def test_a_failing_start_exits_3_and_stops_what_had_started(tmp_path: Path) -> None:
    stopped: list[str] = []

    async def nothing() -> None:
        pass

    async def stop_a() -> None:
        stopped.append("a")

    async def port_taken() -> None:
        raise OSError(98, "Address already in use")

    def extend(app: App) -> None:
        app.add(Component("a", start=nothing, stop=stop_a))
        app.add(Component("b", start=port_taken, stop=nothing))

    with structlog.testing.capture_logs() as logs:
        code = await App(bare_config(tmp_path), extensions=[extend]).run()
    assert code == 3
    assert stopped == ["a"]
    [failed] = [e for e in logs if e["event"] == "startup_failed"]
    assert "Address already in use" in failed["problems"][0]


async def test_a_crashing_task_exits_1(tmp_path: Path) -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    def extend(app: App) -> None:
        app.add(Component("bad", serve=crash))

    with structlog.testing.capture_logs() as logs:
        code = await asyncio.wait_for(App(bare_config(tmp_path), extensions=[extend]).run(), 10)
    assert code == 1
    assert any(e["event"] == "gateway_crashed" and "boom" in e["error"] for e in logs)


async def test_stop_request_runs_the_components_stop_in_reverse_order(tmp_path: Path) -> None:
    order: list[str] = []
    serving = asyncio.Event()

    def component(name: str) -> Component:
        async def start() -> None:
            order.append(f"start {name}")

        async def serve() -> None:
            serving.set()
            await asyncio.Event().wait()

        async def stop() -> None:
            order.append(f"stop {name}")

        return Component(name, start=start, serve=serve, stop=stop)

    app = App(bare_config(tmp_path), extensions=[lambda a: (a.add(component("x")),
                                                            a.add(component("y")))])
    task = asyncio.create_task(app.run(), name="app")
    await asyncio.wait_for(serving.wait(), 10)
    app.request_stop()
    assert await asyncio.wait_for(task, 10) == 0
    assert order == ["start x", "start y", "stop y", "stop x"]


async def test_a_damaged_slug_pin_file_exits_3_naming_the_file(tmp_path: Path) -> None:
    meter = MeterConfig("main", "http://127.0.0.1:9", "owner", Secret("pw"))
    config = replace(bare_config(tmp_path), meters=(meter,))
    damaged = tmp_path / "state" / "slugs" / "main.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"version": 2, "pins": {"Grid": {"slug": "Grid!"}}}')
    with structlog.testing.capture_logs() as logs:
        code = await App(config).run()
    assert code == 3
    [failed] = [e for e in logs if e["event"] == "startup_failed"]
    assert failed["problems"][0].startswith(f"{damaged}: not a valid pin file (entry 'Grid'")
    assert damaged.read_text() == '{"version": 2, "pins": {"Grid": {"slug": "Grid!"}}}'
