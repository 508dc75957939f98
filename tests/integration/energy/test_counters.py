"""The import/export counters end to end: the gateway (in this process, or as a process
killed with SIGKILL), the simulator over real HTTP with a register that crosses zero every
few seconds, a real broker. After each scenario the counters the state JSON published equal
the sums of the positive and of the negative per-second changes the simulator produced --
exactly, in the meter's raw counts -- for every second they include."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.energy import STATE_FILE
from gateway.observe import exposition, registry_for
from gateway.runtime import App
from gateway.runtime.view import AppView
from gateway.simulator import SimMeter, SimServer, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.energy import (
    KWH,
    SWING,
    SWING_SLUG,
    Sample,
    expected,
    gained,
    never_decrease,
    samples,
    swinging_meter,
)
from tests.support.lifecycle import PASSWORD, MeterEntry, config_text, gateway_process
from tests.support.mqtt import Subscriber, gateway_config, running_app, subscriber
from tests.support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.integration

GRID, GRID_SLUG = "Grid", "grid"


def published(sub: Subscriber, prefix: str, slug: str = SWING_SLUG) -> list[Sample]:
    return samples((m.payload for m in sub.on(f"{prefix}/main/state")), slug)


async def counted_past(sub: Subscriber, prefix: str, second: int, slug: str = SWING_SLUG,
                       timeout: float = 30.0) -> Sample:
    """Wait until a state carries counters that include ``second``."""
    def found() -> Sample | None:
        got = published(sub, prefix, slug)
        return got[-1] if got and got[-1].through >= second else None

    sample = await async_wait_until(found, timeout=timeout, what=f"counters through {second}")
    assert isinstance(sample, Sample)
    return sample


@contextlib.asynccontextmanager
async def counting(broker: Broker, tmp_path: Path, prefix: str, meter: SimMeter, topics: str,
                   *, poll_interval_s: float) -> AsyncIterator[Subscriber]:
    """The gateway in this process polling ``meter`` (served over HTTP) as ``main``, and a
    subscriber to ``<prefix>/main/<topics>``."""
    async with SimServer([meter]) as server:
        config = gateway_config(broker, prefix, tmp_path / "state",
                                [("main", server.url_for(meter))],
                                poll_interval_s=poll_interval_s)
        with subscriber(broker, f"{prefix}/main/{topics}") as sub:
            async with running_app(config):
                yield sub


def check_exact(meter: SimMeter, series: list[Sample], name: str) -> None:
    """From the first counters published to the last: exactly the simulator's changes."""
    first, last = series[0], series[-1]
    assert last.through > first.through
    assert never_decrease(series)
    assert gained(first, last) == expected(meter, name, first.through, last.through), name


def metric(app: App, name: str) -> float:
    text = exposition(registry_for(AppView(app))).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("meter") == "main":
                return sample.value
    raise AssertionError(f"{name} is not in /metrics")


async def test_exact_across_a_broker_outage_and_a_meter_outage(
        own_broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    p = topic_prefix
    meter = swinging_meter("SIM1401")
    async with SimServer([meter]) as server:
        config = gateway_config(own_broker, p, tmp_path / "state",
                                [("main", server.url_for(meter))], poll_interval_s=0.5,
                                offline_after=2)
        with subscriber(own_broker, f"{p}/main/+") as sub:
            async with running_app(config) as app:
                start = (await counted_past(sub, p, 0)).through
                own_broker.stop()  # the gateway keeps polling and counting
                await async_wait_until(lambda: meter.latest() >= start + 4,
                                       what="four seconds without the broker")
                own_broker.start()
                await counted_past(sub, p, meter.latest())
                meter.go_down(3.0)  # connections refused: a gap the database fills
                stats = app.pollers["main"].stats
                await async_wait_until(lambda: stats.online is False, what="the meter offline")
                await async_wait_until(lambda: stats.online, timeout=20, what="it is back")
                back = meter.latest()
                await counted_past(sub, p, back + 2)
                assert metric(app, "egauge_energy_discontinuities_total") == 0
                assert metric(app, "egauge_energy_coarse_rows_total") == 0
                assert metric(app, "egauge_energy_requests_total") > 0
    for name, slug in ((SWING, SWING_SLUG), (GRID, GRID_SLUG)):
        series = published(sub, p, slug)
        check_exact(meter, series, name)
        assert series[-1].through >= back + 2
    swing = published(sub, p)
    imported, exported = gained(swing[0], swing[-1])
    assert imported > 0
    assert exported > 0  # it ran both ways
    # the history rows that filled the gaps carry the import and export of their seconds
    rows = [row for m in sub.on(f"{p}/main/history") for row in m.json()["rows"]]
    split = [row for row in rows if row["dt"] == 1 and SWING_SLUG in row.get("import", {})]
    assert split
    for row in split:
        [delta] = meter.raw_changes(SWING, row["ts"] - 1, row["ts"])
        assert (round(row["import"][SWING_SLUG] * KWH), round(row["export"][SWING_SLUG] * KWH)
                ) == (max(0, delta), max(0, -delta)), row["ts"]


async def test_exact_with_a_ten_second_poll_interval(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    """Every poll leaves nine seconds unseen: the database fills them after each poll."""
    p = topic_prefix
    meter = swinging_meter("SIM1402")
    async with counting(broker, tmp_path, p, meter, "state", poll_interval_s=10.0) as sub:
        first = await counted_past(sub, p, 0)
        await counted_past(sub, p, first.through + 20, timeout=60)
    series = published(sub, p)
    assert series[-1].through - series[0].through >= 20
    steps = {b.through - a.through for a, b in itertools.pairwise(series)} - {0}
    # about ten seconds counted between polls, from the meter's rows (a poll lands within a
    # second of its schedule, so the meter's clock may have moved 9 or 11 seconds)
    assert steps
    assert all(9 <= step <= 11 for step in steps), steps
    check_exact(meter, series, SWING)
    check_exact(meter, published(sub, p, GRID_SLUG), GRID)


async def test_a_skipped_second_comes_with_the_next_poll_for_counters_and_history(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    """Polled every 2 s, each poll leaves a second that the energy counters count and the
    history backfill publishes: the row came with the next poll, no request is needed."""
    p = topic_prefix
    meter = swinging_meter("SIM1404")
    async with counting(broker, tmp_path, p, meter, "+", poll_interval_s=2.0) as sub:
        first = await counted_past(sub, p, 0)
        last = (await counted_past(sub, p, first.through + 12, timeout=60)).through

        def history_seconds() -> set[int]:
            return {row["ts"] for m in sub.on(f"{p}/main/history") for row in m.json()["rows"]}

        live = {math.floor(m.json()["ts"]) for m in sub.on(f"{p}/main/state")}
        skipped = set(range(first.through, last)) - live
        await async_wait_until(lambda: skipped <= history_seconds(),
                               what="the skipped seconds on the history topic")
        calls = meter.calls_to("/register")
    polls = [c for c in calls if "rate" in c.params]
    reads = [c for c in calls if "rate" not in c.params and ":" in c.params.get("time", "")]
    assert len(skipped) >= 5
    # each poll brought the second before its own: the skipped seconds cost (almost) no
    # request; one each for the counters and the history without the polls' rows
    assert len(reads) <= len(polls) // 3, (len(reads), len(polls))
    check_exact(meter, published(sub, p), SWING)


async def test_a_reboot_that_resets_the_counters_never_makes_them_go_backwards(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    p = topic_prefix
    meter = SimMeter("SIM1403")
    async with SimServer([meter]) as server:
        config = gateway_config(broker, p, tmp_path / "state",
                                [("main", server.url_for(meter))], poll_interval_s=0.5,
                                offline_after=2)
        with subscriber(broker, f"{p}/main/state") as sub:
            async with running_app(config) as app:
                before = await counted_past(sub, p, meter.latest() + 1, GRID_SLUG)
                first = meter.reboot(downtime_s=2.0, reset_cumulative=True)
                stats = app.pollers["main"].stats
                await async_wait_until(lambda: stats.online is False, what="the meter offline")
                await async_wait_until(lambda: stats.online, timeout=20, what="it is back")
                after = await counted_past(sub, p, first + 2, GRID_SLUG)
                later = await counted_past(sub, p, after.through + 3, GRID_SLUG)
                assert metric(app, "egauge_energy_discontinuities_total") >= 1
    series = published(sub, p, GRID_SLUG)
    assert never_decrease(series)
    # the reset is no flow: over the reboot the counters gain at most what really flowed
    # (the seconds the reset step spans are given up, never made up)
    real = expected(meter, GRID, before.through, after.through, skip=[first])
    gain = gained(before, after)
    assert 0 <= gain[0] <= real[0]
    assert 0 <= gain[1] <= real[1]
    flowed_since = expected(meter, GRID, first, after.through)
    assert gain[0] >= flowed_since[0]
    assert gain[1] >= flowed_since[1]
    # and from the new value on, counting is exact again
    assert gained(after, later) == expected(meter, GRID, after.through, later.through)


def test_exact_across_a_sigkill_of_the_gateway_for_twenty_seconds(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    p = topic_prefix
    meter = swinging_meter("SIM1404", username="owner", password=PASSWORD)
    state = tmp_path / "state"
    with ThreadedSimServer([meter]) as server:
        entry = MeterEntry("main", server.url_for(meter), 1)

        def text(modbus_port: int, http_port: int) -> str:
            return config_text(broker, p, state, [entry], modbus_port=modbus_port,
                               http_port=http_port, poll_interval_s=0.5)

        with subscriber(broker, f"{p}/main/state") as sub:
            (tmp_path / "first").mkdir()
            (tmp_path / "second").mkdir()
            with gateway_process(tmp_path / "first", text) as gw:
                wait_until(lambda: len(published(sub, p)) >= 6, timeout=30,
                           what="six states with counters")
                gw.proc.kill()  # SIGKILL: no goodbye, no flush
                gw.proc.wait(10)
            killed = meter.latest()
            saved = (state / STATE_FILE).read_text()
            assert '"Swing"' in saved
            before = published(sub, p)
            wait_until(lambda: meter.latest() >= killed + 20, timeout=40,
                       what="twenty seconds without the gateway")
            with gateway_process(tmp_path / "second", text) as gw:
                wait_until(lambda: published(sub, p)[-1].through >= killed + 24, timeout=40,
                           what="counters past the twenty seconds")
                assert gw.stop() == 0
    series = published(sub, p)
    assert len(series) > len(before)
    check_exact(meter, series, SWING)
    check_exact(meter, published(sub, p, GRID_SLUG), GRID)
    # what was published before the kill was on disk: the restart never went below it
    restarted = series[len(before):]
    assert restarted[0].through >= before[-1].through
    assert restarted[0].imported >= before[-1].imported
    assert restarted[0].exported >= before[-1].exported
