"""What Home Assistant gets for the energy dashboard: import and export sensors that only grow,
an inverted register that reads positive, kvarh and kVAh sensors, no totals of volts, hertz
or degrees, diagnostic entities, the bridge's configuration_url -- and every number without
float noise. The gateway in this process, the simulator over real HTTP, a real broker."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.config import HttpConfig
from gateway.meter import type_code
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker, free_port
from tests.support.mqtt import Received, gateway_config, running_app, subscriber

pytestmark = pytest.mark.integration

SERIAL = "SIM1410"
NODE = f"egauge_{SERIAL}"
# a JSON number with more decimals than any quantum of a published type supports
NOISY = re.compile(rb"\d\.\d{10,}")


async def test_discovery_and_values_for_the_energy_dashboard(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    p, ha = topic_prefix, f"{topic_prefix}-ha"
    meter = SimMeter(SERIAL)
    http_port = free_port()
    async with SimServer([meter]) as server:
        config = gateway_config(broker, p, tmp_path / "state",
                                [("main", server.url_for(meter))], poll_interval_s=0.5)
        config = dataclasses.replace(
            config, http=HttpConfig(host="127.0.0.1", port=http_port),
            # the sub-panel's CT is reversed: its register reads negative
            meters=tuple(dataclasses.replace(m, invert=("Panel A/B",)) for m in config.meters))
        with subscriber(broker, f"{ha}/#") as disc, subscriber(broker, f"{p}/#") as sub:
            async with running_app(config):
                def positive_import(m: Received) -> bool:
                    return m.json()["registers"]["panel_a_b"].get("import", 0) > 0

                state = (await sub.await_for(f"{p}/main/state", positive_import)).json()
                await disc.await_for(f"{ha}/sensor/{NODE}/diagnostic-poll_latency/config")
                diagnostics = (await sub.await_for(f"{p}/main/diagnostics")).json()
                grid_import = await sub.await_for(f"{p}/main/register/grid/import")
                bridge = (await disc.await_for(
                    f"{ha}/binary_sensor/egauge_gateway_{config.gateway.id}/bridge/config")).json()
    configs = {m.topic.removeprefix(f"{ha}/"): m.json() for m in disc.messages if m.payload}

    def sensor(object_id: str, component: str = "sensor") -> dict[str, Any]:
        config: dict[str, Any] = configs[f"{component}/{NODE}/{object_id}/config"]
        return config

    # the counters: total_increasing energy in kWh, named for their role, on their own topics
    for slug, name in (("grid", "Grid"), ("panel_a_b", "Panel A/B"), ("use", "use")):
        for role in ("import", "export"):
            c = sensor(f"{slug}-{role}")
            assert (c["name"], c["unique_id"]) == (f"{name} {role}", f"{NODE}_{slug}-{role}")
            assert c["default_entity_id"] == f"sensor.main_{slug}_{role}"
            assert (c["device_class"], c["state_class"], c["unit_of_measurement"]) == (
                "energy", "total_increasing", "kWh")
            assert c["state_topic"] == f"{p}/main/register/{slug}/{role}"
    assert f"sensor/{NODE}/solar_plus-import/config" not in configs  # "+": one way only
    # reactive and apparent energy: kvarh and kVAh (no Home Assistant class fits them)
    assert sensor("reactive-import")["unit_of_measurement"] == "kvarh"
    assert sensor("reactive-energy")["unit_of_measurement"] == "kvarh"
    assert sensor("apparent-energy")["unit_of_measurement"] == "kVAh"
    assert "device_class" not in sensor("apparent-energy")
    # no total where the time integral means nothing
    for slug in ("voltage_l1", "frequency", "temp_buro", "amps_1"):
        assert f"sensor/{NODE}/{slug}-energy/config" not in configs, slug
        assert "cumulative" in state["registers"][slug]  # the state JSON keeps its keys
    # the inverted register reads positive, and so does its energy
    panel = state["registers"]["panel_a_b"]
    assert panel["rate"] > 0
    assert panel["import"] > 0
    assert panel["export"] == 0
    # the topic carries the same counter (an earlier value of it: counters only grow)
    assert 0 <= float(grid_import.payload) <= state["registers"]["grid"]["import"]
    # diagnostics: their own entities, available while the bridge is
    online = sensor("diagnostic-online", "binary_sensor")
    assert (online["device_class"], online["entity_category"]) == ("connectivity", "diagnostic")
    assert online["state_topic"] == f"{p}/main/availability"
    assert online["availability"] == [{"topic": f"{p}/bridge/state"}]
    for key, field, unit in (("data_age", "age", "s"), ("failed_polls", "failed_polls", None),
                             ("poll_latency", "latency_ms", "ms")):
        c = sensor(f"diagnostic-{key}")
        assert c["entity_category"] == "diagnostic"
        assert c["default_entity_id"] == f"sensor.main_{key}"
        assert c["state_topic"] == f"{p}/main/diagnostics"
        assert c["value_template"] == f"{{{{ value_json.{field} }}}}"
        assert c.get("unit_of_measurement") == unit
    assert diagnostics["online"] is True
    assert diagnostics["failed_polls"] == 0
    assert 0 <= diagnostics["age"] < 5
    assert diagnostics["latency_ms"] > 0
    # the bridge links to the status page
    assert bridge["device"]["configuration_url"] == f"http://127.0.0.1:{http_port}/"
    # every number rounded to its quantum: no float noise anywhere
    for message in sub.messages:
        assert not NOISY.search(message.payload), (message.topic, message.payload[:200])
    for slug, entry in state["registers"].items():
        digits = type_code(entry["type"]).rate_digits or 0
        assert entry["rate"] == round(entry["rate"], digits), slug
    assert json.dumps(state["registers"]["voltage_l1"]["rate"]) == \
        repr(round(meter.rate("Voltage L1", state["ts"]), 3))
