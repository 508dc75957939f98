"""``plan`` lists the Sparkplug metrics and aliases of each meter: the same names, aliases,
datatypes and units that the running gateway's DBIRTH declares, as Eclipse Tahu's decoder
reads them off the broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.runtime.plancli import plan_all
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import running_app
from tests.support.sparkplug import TahuCodec, recorder, spb_config, tahu_codec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tahu() -> Iterator[TahuCodec]:
    with tahu_codec() as codec:
        yield codec


async def test_plan_lists_the_dbirth_metrics_and_their_aliases(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0961")
    async with SimServer([meter]) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))], allow=("relay",))
        before = await plan_all(config, config.meters)
        with recorder(broker, tahu, node.filter) as rec:
            async with running_app(config):
                dbirth = await rec.await_for(node.topic("DBIRTH", "main"))
        after = await plan_all(config, config.meters)

    declared = {m["name"]: m for m in dbirth.metrics()}
    [planned_before] = [r.sparkplug for r in before]
    [planned] = [r.sparkplug for r in after]
    assert planned_before is not None
    assert planned is not None
    # before the first birth nothing is pinned: the names are known, the aliases are not
    assert {m["name"] for m in planned_before} == set(declared)
    assert all(m["alias"] is None for m in planned_before)
    assert {m["topic"] for m in planned} == {node.topic("DBIRTH", "main")}
    assert {m["name"] for m in planned} == set(declared)
    for m in planned:
        seen = declared[m["name"]]
        assert m["alias"] == seen["alias"], m["name"]
        assert m["datatype"] == seen["type"], m["name"]
        unit = seen.get("properties", {}).get("engUnit", {}).get("value")
        assert m["properties"].get("engUnit") == unit, m["name"]
    registers = {r.name for r in meter.registers}
    assert {m["properties"]["registerName"] for m in planned
            if "registerName" in m["properties"]} == registers
