"""A meter outage as a Sparkplug host sees it: DDEATH, a DBIRTH when the meter is back, then
historical DDATA for every second of the gap, oldest first, with the meter's own values (read
back from its database by the history service). Decoded with Eclipse Tahu's JavaScript
decoder; values checked against the simulator's deterministic registers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import expected_cumulative, running_app
from tests.support.sparkplug import (
    Message,
    TahuCodec,
    aliases,
    check_seq,
    recorder,
    register_of,
    spb_config,
    tahu_codec,
)
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def tahu() -> Iterator[TahuCodec]:
    with tahu_codec() as codec:
        yield codec


def historical(m: Message) -> bool:
    return any(metric.get("isHistorical") for metric in m.metrics())


def seconds_of(messages: list[Message]) -> set[int]:
    return {metric["timestamp"] // 1000 for m in messages for metric in m.metrics()}


async def test_a_meter_outage_is_ddeath_then_dbirth_then_historical_ddata_for_the_gap(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0921")
    async with SimServer([meter]) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))], poll_interval_s=0.25,
                                  offline_after=2)
        ddata = node.topic("DDATA", "main")
        with recorder(broker, tahu, node.filter) as rec:
            async with running_app(config) as app:
                await async_wait_until(lambda: len(rec.on(ddata)) >= 2, what="live DDATA")
                meter.go_down(3.0)
                death = await rec.await_for(node.topic("DDEATH", "main"))
                before = rec.all()[:rec.all().index(death)]
                back = await rec.await_for(node.topic("DBIRTH", "main"),
                                           after=rec.all().index(death))
                last_live = max(seconds_of([m for m in before if m.topic == ddata]))
                first_back = min(seconds_of([back]))
                gap = set(range(last_live + 1, first_back))
                assert len(gap) >= 2  # three seconds away, two failed polls to notice

                def rows() -> list[Message]:
                    return [m for m in rec.all() if m.topic == ddata and historical(m)]

                await async_wait_until(lambda: gap <= seconds_of(rows()),
                                       what="historical DDATA for every second of the gap")
                assert app.history is not None
    births = [m for m in node.sent(rec) if m.verb in ("NBIRTH", "DBIRTH")]
    names = aliases(*births)
    declared = {m["name"]: m for m in back.metrics()}
    history = rows()
    all_messages = rec.all()
    assert all(all_messages.index(m) > all_messages.index(back) for m in history)
    stamps = [metric["timestamp"] for m in history for metric in m.metrics()]
    assert stamps == sorted(stamps)  # oldest first
    checked = 0
    for message in history:
        metrics = message.metrics()
        assert all(metric.get("isHistorical") is True for metric in metrics)  # never mixed
        for metric in metrics:
            name = names[int(metric["alias"])]
            register = register_of(declared[name])
            t = metric["timestamp"] / 1000
            assert metric["timestamp"] // 1000 in gap  # rows of the gap only
            if name.endswith("/Cumulative"):
                assert metric["value"] == pytest.approx(
                    expected_cumulative(meter, register, t), rel=1e-9, abs=1e-9), (name, t)
            else:  # the average rate over the second up to the stored row
                reg = meter.register(register)
                average = (meter.raw(register, t) - meter.raw(register, t - 1)) * reg.quantum
                assert metric["value"] == pytest.approx(average, rel=1e-9, abs=1e-6), (name, t)
            checked += 1
    assert checked >= 2 * len(gap) * len(meter.registers)
    check_seq(node.sent(rec))
