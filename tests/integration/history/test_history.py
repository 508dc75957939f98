"""Gap-free history end to end: the gateway in this process, the simulator over real HTTP, a
real Mosquitto and a subscriber with a persistent session. After a gap the subscriber holds
every second the meter stored, live or from ``<base>/main/history``, with the meter's own
values; a restart resumes right after the saved watermark."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.history import STATE_FILE
from gateway.observe import exposition, registry_for
from gateway.runtime import App
from gateway.runtime.view import AppView
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.history import (
    Recorder,
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


def samples(app: App, prefix: str) -> dict[tuple[str, tuple[str, ...]], float]:
    """The /metrics samples whose name begins with ``prefix``: (name, label values) -> value."""
    text = exposition(registry_for(AppView(app))).decode()
    return {(s.name, tuple(s.labels.values())): s.value
            for family in text_string_to_metric_families(text)
            if family.name.startswith(prefix) for s in family.samples}


def history_metric(app: App) -> float:
    value = samples(app, "egauge_history_rows").get(
        ("egauge_history_rows_published_total", ("main",)))
    assert value is not None, "egauge_history_rows_published is not in /metrics"
    return value


@contextlib.asynccontextmanager
async def one_meter(tmp_path: Path, prefix: str, serial: str, **history: int
                    ) -> AsyncIterator[tuple[SimMeter, App, Recorder, int]]:
    """A broker with persistence, one simulated meter, a recording subscriber and the gateway
    with history: (meter, app, recorder, first second the subscriber had)."""
    broker = persistent_broker(tmp_path / "mq")
    meter = SimMeter(serial)
    try:
        async with SimServer([meter]) as server:
            config = history_config(broker, prefix, tmp_path / "state",
                                    server.url_for(meter), **history)
            with recorder(broker, f"{prefix}/#") as rec:
                async with running_app(config) as app:
                    yield meter, app, rec, await first_second(rec, prefix)
    finally:
        broker.stop()


def history_requests(meter: SimMeter) -> list[dict[str, str]]:
    """The database requests (not the polls, which read the newest two rows with rates)."""
    return [c.params for c in meter.calls_to("/register")
            if ":" in c.params.get("time", "") and "rate" not in c.params]


async def test_a_meter_outage_is_backfilled_in_max_rows_chunks_with_the_meters_values(
        tmp_path: Path, topic_prefix: str) -> None:
    p = topic_prefix
    async with one_meter(tmp_path, p, "SIM0501", max_rows=2, energy=False) as scene:
        meter, app, rec, start = scene
        meter.go_down(3.0)
        await async_wait_until(lambda: app.pollers["main"].stats.online is False,
                               what="the meter offline")
        skipped = app.pollers["main"].stats.polls_skipped
        await async_wait_until(lambda: app.pollers["main"].stats.online, what="the meter back")
        end = meter.latest() + 1
        await wait_covered(rec, p, meter, start, end)
        assert app.pollers["main"].stats.polls_skipped == skipped
        # /metrics counts the rows the subscriber received
        await async_wait_until(
            lambda: history_metric(app) == len(history_rows(rec, p)) > 0,
            what="egauge_history_rows_published matching the rows received")
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



def catchup(app: App) -> dict[tuple[str, str], float]:
    """The catch-up budgets in /metrics: (sample name, service) -> value."""
    return {(name, labels[0]): v for (name, labels), v in samples(app, "egauge_catchup_").items()}


async def test_failed_polls_cut_the_catch_up_budget_and_the_gap_still_fills(
        tmp_path: Path, topic_prefix: str) -> None:
    p = topic_prefix
    async with one_meter(tmp_path, p, "SIM0503") as (meter, app, rec, start):
        before = catchup(app)
        assert before[("egauge_catchup_allowed", "history")] == \
            before[("egauge_catchup_limit", "history")] > 1
        assert before[("egauge_catchup_cuts_total", "energy")] == 0
        meter.go_down(2.0)
        await async_wait_until(lambda: catchup(app)[("egauge_catchup_cuts_total", "history")] > 0,
                               what="the budget cut while polls fail")
        cut = catchup(app)
        assert cut[("egauge_catchup_allowed", "history")] < \
            cut[("egauge_catchup_limit", "history")]
        assert cut[("egauge_catchup_cuts_total", "energy")] > 0  # both services
        await async_wait_until(lambda: app.pollers["main"].stats.online, what="the meter back")
        await wait_covered(rec, p, meter, start, meter.latest() + 1)
        await async_wait_until(
            lambda: (c := catchup(app))[("egauge_catchup_allowed", "history")]
            == c[("egauge_catchup_limit", "history")],
            timeout=30, what="the budget back at its limit in calm seconds")
    assert check_history_values(rec, p, meter) == len(history_rows(rec, p)) > 0
