"""The status page rendered by headless Chromium: per meter its own health (one meter down,
the gateway still ready), its Modbus unit id, its recent power plotted, and the last
capture drawn as a waveform with one trace per channel and axes with units -- checked in
the rendered DOM and in a screenshot that is not blank where the traces are."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gateway.commands import CommandRequest
from gateway.config import (
    CommandPolicy,
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
)
from gateway.observe.plot import PALETTES
from gateway.runtime import App
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import free_port
from tests.support.chromium import dump_dom, screenshot
from tests.support.png import read_png
from tests.support.simulator import SIM_PASSWORD
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

SPEED = 100.0  # the meter's clock runs this fast: ten minutes of trend within seconds


@dataclass
class Svg:
    kind: str
    traces: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """The charts of a rendered page, and its text."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.charts: list[Svg] = []
        self.text: list[str] = []
        self._label = False
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "svg" and "chart" in classes:
            self.charts.append(Svg(next(c for c in classes if c != "chart")))
        elif tag == "polyline" and "trace" in classes and self.charts:
            points = [tuple(map(float, p.split(","))) for p in (a.get("points") or "").split()]
            self.charts[-1].traces[a.get("data-series") or ""] = points  # type: ignore[assignment]
        self._label = tag == "text" and "axis-label" in classes

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._label and self.charts:
            self.charts[-1].labels.append(data)
            self._label = False

    def chart(self, kind: str) -> Svg:
        [found] = [c for c in self.charts if c.kind == kind]
        return found


def peaks(points: list[tuple[float, float]]) -> int:
    """Local maxima of a trace (SVG y grows downwards: minima of y), past a tenth of its
    height from the middle."""
    ys = [y for _, y in points]
    middle, swing = (max(ys) + min(ys)) / 2, (max(ys) - min(ys)) / 2
    return sum(1 for a, b, c in zip(ys, ys[1:], ys[2:], strict=False)
               if b < a and b <= c and b < middle - swing * 0.1)


def hex_colour(text: str) -> tuple[int, int, int]:
    return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[App, SimMeter]]:
    start, origin = time.time(), 1_700_000_000 + 13 * 3600  # mid-day: every CT carries current
    meter = SimMeter("SIM0801", password=SIM_PASSWORD, alert_period_s=0,
                     clock=lambda: origin + (time.time() - start) * SPEED)
    async with SimServer([meter], host="127.0.0.1", port=0) as server:
        meters = (
            MeterConfig("main", server.url_for(meter), "owner", Secret(SIM_PASSWORD),
                        poll_interval_s=0.5, timeout_s=0.4, modbus_unit_id=7,
                        commands=CommandPolicy(allow=("capture",))),
            MeterConfig("attic", f"http://127.0.0.1:{free_port()}", "owner", Secret("x"),
                        poll_interval_s=0.5, timeout_s=0.4, offline_after=2,
                        modbus_unit_id=8),
        )
        config = Config(GatewaySection(id="page", state_dir=str(tmp_path / "state")), meters,
                        MqttConfig(enabled=False), ModbusConfig(host="127.0.0.1", port=0),
                        HttpConfig(host="127.0.0.1", port=0))
        app = App(config)
        task = asyncio.create_task(app.run(), name="app")
        try:
            await async_wait_until(lambda: app.http is not None and app.http.port != 0,
                                   what="the HTTP endpoint")
            yield app, meter
        finally:
            app.request_stop()
            assert await asyncio.wait_for(task, 20) == 0


async def test_the_page_draws_the_capture_and_the_power_trend_and_each_meters_health(
        gateway: tuple[App, SimMeter], tmp_path: Path) -> None:
    app, meter = gateway
    assert app.trend is not None
    assert app.router is not None
    assert app.http is not None
    trend = app.trend
    await async_wait_until(
        lambda: all(len(p) >= 10 for _, p in trend.series("main")) and trend.series("main"),
        what="ten trend buckets of main", timeout=30)
    await async_wait_until(lambda: app.hub.meter("attic").availability is not None,
                           what="attic seen offline")
    answer = await app.router.handle(CommandRequest("main", "capture", json.dumps(
        {"channels": ["L1", "S1"], "duration_s": 0.05}).encode()))
    assert answer is not None
    assert answer.ok, answer.error
    captured: dict[str, Any] = answer.data
    hz = meter.local_rate("L1", int(captured["first_sample"]), "f")

    loop = asyncio.get_running_loop()
    url = app.http.url + "/"
    dom = await loop.run_in_executor(None, dump_dom, url, tmp_path / "dom")
    png = await loop.run_in_executor(None, screenshot, url, tmp_path / "shot")

    page = Page(dom)
    capture = page.chart("capture")
    assert set(capture.traces) == {"L1", "S1"}
    assert {"V", "A", "time after the first sample (ms)"} <= set(capture.labels)
    for name, points in capture.traces.items():
        assert len(points) == len(next(c for c in captured["channels"] if c["name"] == name)["t"])
        # the drawn trace has the simulator's cycles: 60 Hz over 50 ms is 3 periods
        assert peaks(points) == pytest.approx(hz * 0.05, abs=1)
    power = page.chart("trend")
    followed = [name for name, _ in trend.series("main")]
    assert set(power.traces) == set(followed)
    assert {"use", "gen"} <= set(followed)  # the site's totals come first
    assert {"W", "minutes before the latest reading"} <= set(power.labels)
    assert all(len(points) >= 10 for points in power.traces.values())
    text = " ".join(page.text)
    assert "1 of 2 meters online" in text
    assert "Modbus unit 7" in text
    assert "Modbus unit 8" in text
    assert "connection refused" in text  # why attic is down, on the page
    assert "offline" in text

    image = read_png(png)
    assert (image.width, image.height) == (1200, 2000)
    assert image.non_white() > 20_000
    for colour in PALETTES["capture"][:2]:  # L1 and S1: sines across the whole plot
        assert image.count(hex_colour(colour)) > 600, colour
    # the trend's first line across most of the plot (its legend swatch is 100 pixels)
    assert image.count(hex_colour(PALETTES["trend"][0])) > 500
