"""``egauge-gateway plan`` for the repository's example gateway.yaml, pointed at two simulated
meters and a broker of its own, checked against what the running gateway really publishes on
the broker and serves over Modbus. Nothing here is derived from the plan's own code: the plan
is printed (``--json``) by one process, the gateway runs as another, and this test compares
the plan with what it observes (retained topics and discovery payloads from a subscriber,
Modbus values read with pymodbus and compared with the simulator's)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import load_config, load_yaml
from gateway.simulator import SimMeter, ThreadedSimServer, Wave, physical
from tests.support.broker import Broker, free_port
from tests.support.lifecycle import ROOT, gateway_process
from tests.support.modbus import f32, rate_and_ts
from tests.support.mqtt import running_app, subscriber
from tests.support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "gateway.yaml"
ENV = {"EGAUGE_MAIN_PASSWORD": "main-Pw-77", "EGAUGE_GARAGE_PASSWORD": "garage-Pw-78",
       "MQTT_HOST": "127.0.0.1"}


@pytest.fixture
def meters() -> Iterator[dict[str, tuple[SimMeter, str]]]:
    main = SimMeter("SIM0901", password=ENV["EGAUGE_MAIN_PASSWORD"])
    garage_registers = [physical(n, "P", i, i, Wave(200.0 * (i + 1), 50.0, 240.0 + 30 * i))
                        for i, n in enumerate(["Grid", "Solar", "EV Charger", "Water Heater"])]
    garage = SimMeter("SIM0902", password=ENV["EGAUGE_GARAGE_PASSWORD"],
                      registers=garage_registers)
    with ThreadedSimServer([main, garage]) as server:
        yield {"main": (main, server.url_for(main)), "garage": (garage, server.url_for(garage))}


def example_pointed_at(meters: dict[str, tuple[SimMeter, str]], broker: Broker, state: Path,
                       modbus_port: int, http_port: int) -> str:
    """The example configuration with only the addresses changed (JSON is YAML)."""
    data = load_yaml(EXAMPLE)
    assert isinstance(data, dict)
    data["gateway"]["state_dir"] = str(state)
    for entry in data["meters"]:
        entry["url"] = meters[entry["id"]][1]
    data["mqtt"]["port"] = broker.port
    data["modbus"].update(host="127.0.0.1", port=modbus_port)
    data["http"]["port"] = http_port
    return json.dumps(data)


def plan(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "plan", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)}, check=False)


def planned_json(config: Path) -> dict[str, Any]:
    done = plan(config, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def retained_now(broker: Broker, filters: list[str]) -> dict[str, bytes]:
    """Every retained message under ``filters`` at this moment (topic -> payload)."""
    found: dict[str, bytes] = {}
    for topic_filter in filters:
        with subscriber(broker, topic_filter) as sub:
            marker = topic_filter.replace("#", "zz-marker")
            sub.client.publish(marker, b"end", qos=1)  # arrives after the retained ones
            sub.wait_for(marker)
            found.update({m.topic: m.payload for m in sub.messages if m.retain and m.payload})
    return found


def planned_retained(planned: dict[str, Any]) -> set[str]:
    topics = {t["topic"] for i in planned["instances"] for t in i["topics"] if t["retained"]}
    for meter in planned["meters"]:
        topics |= {t["topic"] for t in meter["mqtt"]["topics"] if t["retained"]}
    return topics


async def test_the_plan_of_the_example_is_what_the_gateway_publishes_and_serves(
        own_broker: Broker, tmp_path: Path, meters: dict[str, tuple[SimMeter, str]]) -> None:
    modbus_port, http_port = free_port(), free_port()
    text = example_pointed_at(meters, own_broker, tmp_path / "state", modbus_port, http_port)
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    before = planned_json(config)  # before the gateway ever ran: nothing pinned yet
    assert [m["meter"] for m in before["meters"]] == ["main", "garage"]
    assert {m["source"]["from"] for m in before["meters"]} == {"meter"}
    garage_plan = before["meters"][1]
    assert [r["name"] for r in garage_plan["registers"]] == ["Grid", "Solar", "EV Charger"]

    expected = planned_retained(before)
    with subscriber(own_broker, "#") as live, \
            gateway_process(tmp_path, lambda *_: text, env=ENV) as gw:
        def all_published() -> bool:
            return expected <= live.topics()

        wait_until(all_published, timeout=30, what="every planned retained topic")
        retained = retained_now(own_broker, ["egauge/#", "homeassistant/#"])
        assert set(retained) == expected  # the plan is complete, and nothing else is retained
        check_discovery(before, retained)
        for meter in before["meters"]:
            await check_modbus(meter, meters[meter["meter"]][0], modbus_port)
        after = planned_json(config)  # now from the pins the gateway wrote: the same plan
        assert strip_changes(after) == strip_changes(before)
        assert all(not m["changes"]["any"] for m in after["meters"])
        assert gw.stop() == 0
    # a restart after a pause leaves a gap: the history topics of the plan carry it
    stopped = {m: sim.latest() for m, (sim, _) in meters.items()}
    wait_until(lambda: all(sim.latest() >= stopped[m] + 3 for m, (sim, _) in meters.items()),
               what="three meter seconds without the gateway")
    with subscriber(own_broker, "egauge/+/history") as history, \
            gateway_process(tmp_path, lambda *_: text, env=ENV) as gw:
        for meter in before["meters"]:
            topic = meter["history_topic"]
            assert topic == f"egauge/{meter['meter']}/history"
            rows = history.wait_for(topic, timeout=30).json()
            assert rows["meter"] == meter["meter"]
            slugs = {r["slug"] for r in meter["registers"]}
            assert set(rows["registers"]) == slugs
        assert gw.stop() == 0
    # a meter that cannot be reached is planned from its pins, and says so
    meters["garage"][0].go_down(60.0)
    offline = planned_json(config)
    source = offline["meters"][1]["source"]
    assert source["from"] == "pins"
    assert "unreachable" in source["detail"]
    ident = offline["meters"][1]["identity"]
    assert (ident["serial"], ident["model"]) == ("SIM0902", meters["garage"][0].model)
    unchanged = ("source", "identity")  # where it comes from; the meter's uptime
    assert {k: v for k, v in strip_changes(offline)["meters"][1].items() if k not in unchanged} \
        == {k: v for k, v in strip_changes(before)["meters"][1].items() if k not in unchanged}


def strip_changes(planned: dict[str, Any]) -> dict[str, Any]:
    """The plan without what depends on the pins' state (the changes) and on the moment (the
    meter's uptime in its identity)."""
    out = json.loads(json.dumps(planned))
    for meter in out["meters"]:
        meter.pop("changes")
        if meter["identity"] is not None:
            meter["identity"].pop("uptime_s")
    return out


def check_discovery(planned: dict[str, Any], retained: dict[str, bytes]) -> None:
    """Each planned entity is the discovery payload on the broker: ids, classes and unit."""
    entities = [e for m in planned["meters"] for e in m["homeassistant"]]
    entities += [i["entity"] for i in planned["instances"]]
    assert len({e["entity_id"] for e in entities}) == len(entities)
    for entity in entities:
        payload = json.loads(retained[entity["discovery_topic"]])
        assert payload["default_entity_id"] == entity["entity_id"]
        assert payload["object_id"] == entity["entity_id"].split(".", 1)[1]
        assert payload["unique_id"] == entity["unique_id"]
        assert payload["state_topic"] == entity["state_topic"]
        assert payload.get("device_class") == entity["device_class"]
        assert payload.get("state_class") == entity["state_class"]
        assert payload.get("unit_of_measurement") == entity["unit"]
    for meter in planned["meters"]:  # sensor.<meter>_<slug>: predictable from the plan
        for register in meter["registers"]:
            ids = {e["entity_id"] for e in meter["homeassistant"]
                   if e["register"] == register["name"]}
            assert f"sensor.{meter['meter']}_{register['slug']}" in ids


async def check_modbus(meter: dict[str, Any], sim: SimMeter, port: int) -> None:
    """Every planned rate address holds its register's rate; the plan's last address is
    the end of the unit's map (a read just past it is refused with 0x02)."""
    unit = meter["modbus"]
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert await client.connect()
    try:
        rates = [a for a in unit["addresses"] if a["source"] == "rate" and a["register"]]
        assert {a["register"] for a in rates} == {r["name"] for r in meter["registers"]}
        for point in rates:
            async def holds(point: dict[str, Any] = point) -> bool:
                got = await rate_and_ts(client, unit["unit_id"], point["address"])
                if got is None:
                    return False
                value, ts = got
                return value == f32(sim.rate(point["register"], ts)) and not math.isnan(value)

            await async_wait_until(holds, timeout=15,
                                   what=f"{point['register']} at {point['address']}")
        last = max(a["address"] + a["registers"] for a in unit["addresses"])
        beyond = await client.read_input_registers(last, count=1, device_id=unit["unit_id"])
        assert beyond.isError()
        assert beyond.exception_code == 0x02
    finally:
        client.close()


def test_plan_refuses_an_unknown_meter() -> None:
    done = plan(EXAMPLE, "--meter", "nope")
    assert done.returncode == 78
    assert done.stderr.strip() == "--meter: no meter 'nope' (meters: main, garage)"



DIFF_CONFIG = """\
gateway: {{id: difftest, state_dir: "{state}"}}
meters:
  - {{id: main, url: "{url}", username: owner, password: "${{EGAUGE_MAIN_PASSWORD}}",
     poll_interval_s: 0.5, modbus_unit_id: 1}}
mqtt: {{host: 127.0.0.1, port: {mqtt_port}, base_topic: {prefix},
        homeassistant: {{prefix: {prefix}-ha}}}}
modbus: {{host: 127.0.0.1, port: {modbus_port}}}
http: {{enabled: false}}
"""


async def test_plan_diff_reports_what_the_meter_changed_and_nothing_otherwise(
        broker: Broker, topic_prefix: str, tmp_path: Path,
        meters: dict[str, tuple[SimMeter, str]]) -> None:
    sim, url = meters["main"]
    config = tmp_path / "gateway.yaml"
    config.write_text(DIFF_CONFIG.format(state=tmp_path / "state", url=url,
                                         mqtt_port=broker.port, prefix=topic_prefix,
                                         modbus_port=free_port()))
    running = load_config(config, env=ENV)
    async with running_app(running):  # the gateway pins what it sees
        await async_wait_until(lambda: (tmp_path / "state" / "slugs" / "main.json").exists()
                               and (tmp_path / "state" / "modbus" / "main.json").exists(),
                               what="the pins written")
    same = plan(config, "--diff")
    assert (same.returncode, same.stdout) == (0, f"main: no changes (read from the meter at "
                                                 f"{url})\n"), same.stderr

    sim.add_register("Panel A-B", "P", Wave(777.0, 0.0, 600.0))
    slug = "panel_a_b_" + hashlib.sha1(b"Panel A-B", usedforsecurity=False).hexdigest()[:6]
    # the default map pinned 11 names and then the import and export counters of the 5 that
    # run both ways (use, gen, Grid, Panel A/B, Reactive): the new name comes after those
    address = 100 + 6 * (11 + 10)
    added = plan(config, "--diff")
    assert added.returncode == 1, added.stderr
    assert f"new      'Panel A-B': slug {slug}, topic {topic_prefix}/main/register/{slug}, " \
           f"sensor.main_{slug}, Modbus {address}" in added.stdout
    changes = json.loads(plan(config, "--diff", "--json").stdout)["meters"][0]["changes"]
    assert changes["new"] == [{"name": "Panel A-B", "slug": slug, "modbus_address": address}]
    assert changes["modbus_new"] == ["Panel A-B", "Panel A-B import", "Panel A-B export"]
    assert (changes["gone"], changes["changed"]) == ([], [])

    sim.rename_registers({"Grid": "Grid Main"})  # same idx and did
    renamed = plan(config, "--diff", "--json")
    assert renamed.returncode == 1
    changes = json.loads(renamed.stdout)["meters"][0]["changes"]
    assert changes["changed"] == [{"old_name": "Grid", "new_name": "Grid Main",
                                   "old_type": "P", "new_type": "P"}]
    assert changes["gone"] == ["Grid"]
    assert {n["name"] for n in changes["new"]} == {"Panel A-B", "Grid Main"}

    sim.go_down(60.0)
    down = plan(config, "--diff")
    assert down.returncode == 3
    assert down.stdout.startswith("main: cannot compare: meter unreachable")
