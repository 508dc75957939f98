"""Gap-free history end to end: the gateway in this process, the simulator over real HTTP, a
real Mosquitto and a subscriber with a persistent session. After a gap the subscriber holds
every second the meter stored, live or from ``<base>/main/history``, with the meter's own
values; a restart resumes right after the saved watermark."""

from __future__ import annotations

import json
import math
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.history import STATE_FILE
from gateway.observe import exposition, registry_for
from gateway.runtime import App
from gateway.runtime.view import AppView
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.history import (
    check_history_values,
    first_second,
    history_config,
    history_rows,
    persistent_broker,
    recorder,
    wait_covered,
)
from tests.support.mqtt import running_app
from tests.support.waiting import async_wait_until


def history_metric(app: App) -> float:
    text = exposition(registry_for(AppView(app))).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "egauge_history_rows_published_total":
                return sample.value
    raise AssertionError("egauge_history_rows_published is not in /metrics")


def history_requests(meter: SimMeter) -> list[dict[str, str]]:
    """The database requests (not the polls, which read the newest two rows with rates)."""
    return [c.params for c in meter.calls_to("/register")
            if ":" in c.params.get("time", "") and "rate" not in c.params]


async def test_a_meter_outage_is_backfilled_in_max_rows_chunks_with_the_meters_values(
        tmp_path: Path, topic_prefix: str) -> None:
    broker = persistent_broker(tmp_path / "mq")
    p = topic_prefix
    meter = SimMeter("SIM0501")
    try:
        async with SimServer([meter]) as server:
            config = history_config(broker, p, tmp_path / "state", server.url_for(meter),
                                    max_rows=2, energy=False)
            with recorder(broker, f"{p}/#") as rec:
                async with running_app(config) as app:
                    start = await first_second(rec, p)
                    meter.go_down(3.0)
                    await async_wait_until(lambda: app.pollers["main"].stats.online is False,
                                           what="the meter offline")
                    skipped = app.pollers["main"].stats.polls_skipped
                    await async_wait_until(lambda: app.pollers["main"].stats.online,
                                           what="the meter back")
                    end = meter.latest() + 1
                    await wait_covered(rec, p, meter, start, end)
                    assert app.pollers["main"].stats.polls_skipped == skipped
                    # /metrics counts the rows the subscriber received
                    await async_wait_until(
                        lambda: history_metric(app) == len(history_rows(rec, p)) > 0,
                        what="egauge_history_rows_published matching the rows received")
    finally:
        broker.stop()
    rows = history_rows(rec, p)
    assert len(rows) >= 2  # three seconds away: at least two seconds between good polls
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)  # oldest first
    assert check_history_values(rec, p, meter) == len(rows)
    requests = history_requests(meter)
    # one new row per request (its base and one more), but for the rows that were still
    # kept from a poll (each brings its second and the one before)
    assert len(requests) >= len(rows) - 2
    for params in requests:
        first, step, last = (int(x) for x in params["time"].split(":"))
        assert step == 1
        assert int(params["max-rows"]) <= 2
        assert (last - first) // step + 1 <= 2
    starts = [int(r["time"].split(":")[0]) for r in requests]
    assert starts == sorted(starts)  # each chunk begins where the one before ended


async def test_a_restart_resumes_right_after_the_saved_watermark(
        tmp_path: Path, topic_prefix: str) -> None:
    broker = persistent_broker(tmp_path / "mq")
    p = topic_prefix
    meter = SimMeter("SIM0502")
    state = tmp_path / "state"
    try:
        async with SimServer([meter]) as server:
            config = history_config(broker, p, state, server.url_for(meter))
            with recorder(broker, f"{p}/#") as rec:
                async with running_app(config):
                    start = await first_second(rec, p)
                    await async_wait_until(lambda: len(rec.on(f"{p}/main/state")) >= 4,
                                           what="a few states")
                saved = json.loads((state / STATE_FILE).read_text())
                watermark = saved["meters"]["main"]["published_until"]
                stopped_at = meter.latest()
                await async_wait_until(lambda: meter.latest() >= stopped_at + 2,
                                       what="two seconds without the gateway")
                async with running_app(config):
                    await async_wait_until(lambda: history_rows(rec, p),
                                           what="history after the restart")
                    end = meter.latest() + 1
                    await wait_covered(rec, p, meter, start, end)
    finally:
        broker.stop()
    live_before = [math.floor(s["ts"]) for s in rec.on(f"{p}/main/state")]
    assert watermark in live_before  # the watermark is a second the broker took
    rows = history_rows(rec, p)
    assert rows[0]["ts"] == watermark + 1
    assert min(r["ts"] for r in rows) == watermark + 1  # nothing before it again
    assert check_history_values(rec, p, meter) == len(rows)


async def test_without_history_nothing_is_backfilled(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    p = topic_prefix
    meter = SimMeter("SIM0503")
    async with SimServer([meter]) as server:
        config = history_config(broker, p, tmp_path / "state", server.url_for(meter),
                                enabled=False, energy=False)
        with recorder(broker, f"{p}/#") as rec:
            async with running_app(config) as app:
                await first_second(rec, p)
                meter.go_down(1.0)
                await async_wait_until(lambda: app.pollers["main"].stats.online is False,
                                       what="the meter offline")
                await async_wait_until(lambda: app.pollers["main"].stats.online,
                                       what="the meter back")
                assert app.history is None
    assert history_requests(meter) == []
    assert rec.on(f"{p}/main/history") == []
    assert not (tmp_path / "state" / STATE_FILE).exists()
