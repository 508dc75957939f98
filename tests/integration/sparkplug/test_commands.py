"""DCMD writes end to end: a Sparkplug host's relay write goes through the command router
(the meter's ``commands.allow``, dry run, audit on ``<base>/bridge/audit``) to the simulator's
PRM3 relay module under /ctrl. Commands are encoded with Eclipse Tahu's JavaScript encoder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import running_app
from tests.support.sparkplug import (
    Message,
    TahuCodec,
    check_seq,
    recorder,
    spb_config,
    tahu_codec,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def tahu() -> Iterator[TahuCodec]:
    with tahu_codec() as codec:
        yield codec


def relay_write(tahu: TahuCodec, value: bool, *, name: str | None = None,
                alias: int | None = None, dry_run: bool = False) -> bytes:
    metric: dict[str, object] = {"type": "Boolean", "value": value, "timestamp": 1}
    if name is not None:
        metric["name"] = name
    if alias is not None:
        metric["alias"] = alias
    if dry_run:
        metric["properties"] = {"dry_run": {"type": "Boolean", "value": True}}
    return tahu.encode({"timestamp": 1, "metrics": [metric]})


async def test_a_relay_dcmd_is_refused_without_the_allow_entry(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0931")
    audit = f"{topic_prefix}/bridge/audit"
    async with SimServer([meter]) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))])
        dcmd = node.topic("DCMD", "main")
        with recorder(broker, tahu, node.filter, audit) as rec:
            async with running_app(config):
                dbirth = await rec.await_for(node.topic("DBIRTH", "main"))
                rec.publish(dcmd, relay_write(tahu, True, name="Relays/1"))
                refused = await rec.await_for(audit)
                await rec.await_for(node.topic("DDATA", "main"), after=len(rec.all()))
    assert not [n for n in dbirth.by_name() if n.startswith("Relays/")]  # not offered
    event = refused.body
    assert (event["meter"], event["action"], event["source"]) == ("main", "relay", "sparkplug")
    assert event["outcome"] == "not_allowed"
    assert event["client"] == f"{dcmd}#Relays/1"
    assert event["request"] == {"relay": 1, "state": "closed"}
    assert meter.relays == (False, False, False)
    assert meter.calls_to("/ctrl/call") == []  # nothing reached the meter
    check_seq(node.sent(rec))


async def test_a_relay_dcmd_by_alias_switches_the_relay_when_allowed(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0932")
    audit = f"{topic_prefix}/bridge/audit"
    async with SimServer([meter]) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))], allow=("relay",))
        dcmd = node.topic("DCMD", "main")
        with recorder(broker, tahu, node.filter, audit) as rec:
            async with running_app(config):
                dbirth = await rec.await_for(node.topic("DBIRTH", "main"))
                relays = {n: m for n, m in dbirth.by_name().items() if n.startswith("Relays/")}
                assert sorted(relays) == ["Relays/1", "Relays/2", "Relays/3"]  # a PRM3
                rec.publish(dcmd, relay_write(tahu, True, alias=relays["Relays/2"]["alias"],
                                              dry_run=True))
                planned = await rec.await_for(audit)
                assert meter.relays == (False, False, False)
                alias = relays["Relays/1"]["alias"]
                rec.publish(dcmd, relay_write(tahu, True, alias=alias))  # by alias alone
                done = await rec.await_for(audit, lambda m: not m.body["dry_run"])

                def switched(m: Message) -> bool:
                    return any(metric.get("alias") == alias and metric.get("value") is True
                               for metric in m.metrics())

                reported = await rec.await_for(node.topic("DDATA", "main"), switched)
    for relay in relays.values():
        assert (relay["type"], relay["value"]) == ("Boolean", None)  # not known before a write
    assert (planned.body["outcome"], planned.body["dry_run"]) == ("ok", True)
    assert planned.body["request"] == {"relay": 2, "state": "closed"}
    event = done.body
    assert (event["outcome"], event["source"], event["action"]) == ("ok", "sparkplug", "relay")
    assert event["client"] == f"{dcmd}#Relays/1"
    assert meter.relays == (True, False, False)
    # only the real write was reported, after its audit event
    assert rec.all().index(reported) > rec.all().index(done)
    assert not [m for m in rec.on(node.topic("DDATA", "main"))
                if any(metric.get("alias") == relays["Relays/2"]["alias"]
                       for metric in m.metrics())]
    check_seq(node.sent(rec))
