"""Home Assistant discovery payloads and the per-meter state JSON they read."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest

from gateway.config import HomeAssistant, MeterConfig, MqttConfig
from gateway.model import EnergyCount, Identity, Reading, RegisterInfo, RegisterValue
from gateway.mqtt import Topics
from gateway.mqtt.discovery import (
    MeterDiscovery,
    bridge_config,
    energy_state_class,
    expire_after,
    sensor_class,
)
from gateway.mqtt.plan import MeterPlan
from gateway.secret import Secret

TOPICS = Topics("egauge", "homeassistant")
METER = MeterConfig("main", "https://egauge12345.local", "owner", Secret("pw"),
                    poll_interval_s=2.0, offline_after=3)
IDENT = Identity("G12345", "EG4030", "4.6.2", "egauge12345")
REQUIRED = {"name", "unique_id", "state_topic", "value_template", "availability",
            "availability_mode", "expire_after", "device", "origin", "state_class"}


def configs(registers: list[RegisterInfo], *, per_register: bool = True,
            net: frozenset[str] = frozenset()) -> dict[str, dict[str, object]]:
    d = MeterDiscovery(TOPICS, "site-a", METER, IDENT, 99, per_register)
    out = d.configs(((r, r.name.lower().replace("+", "_plus")) for r in registers), net)
    return {topic: json.loads(payload) for topic, payload in out.items()}


# Classes and units as northbound-conventions.md §2.1 and the brief list them.
@pytest.mark.parametrize(
    ("code", "device_class", "unit"),
    [
        ("P", "power", "W"),
        ("V", "voltage", "V"),
        ("I", "current", "A"),
        ("F", "frequency", "Hz"),
        ("S", "apparent_power", "VA"),
        ("var", "reactive_power", "var"),
        ("PQ", "reactive_power", "var"),
        ("T", "temperature", "°C"),
    ],
)
def test_sensor_classes(code: str, device_class: str, unit: str) -> None:
    [(_, cfg)] = [(t, c) for t, c in configs([RegisterInfo("X", code, 0, 0)]).items()
                  if not t.endswith("-energy/config")]
    assert cfg["device_class"] == device_class
    assert cfg["unit_of_measurement"] == unit
    assert cfg["state_class"] == "measurement"


def test_unknown_code_has_no_device_class() -> None:
    assert sensor_class("zz", "").device_class is None
    [cfg] = configs([RegisterInfo("Mystery", "zz", 0, 0)]).values()
    assert "device_class" not in cfg
    assert "unit_of_measurement" not in cfg


def test_every_sensor_carries_the_required_keys() -> None:
    regs = [RegisterInfo("Grid", "P", 0, 0), RegisterInfo("Volts", "V", 1, 1)]
    result = configs(regs)
    assert set(result) == {
        "homeassistant/sensor/egauge_G12345/grid/config",
        "homeassistant/sensor/egauge_G12345/grid-energy/config",
        "homeassistant/sensor/egauge_G12345/volts/config",
    }
    for cfg in result.values():
        assert set(cfg) >= REQUIRED, REQUIRED - set(cfg)
        assert cfg["availability"] == [{"topic": "egauge/bridge/state"},
                                       {"topic": "egauge/main/availability"}]
        assert cfg["availability_mode"] == "all"
        assert cfg["expire_after"] == 99
        device = cfg["device"]
        assert isinstance(device, dict)
        assert device["identifiers"] == ["egauge_G12345"]
        assert device["model"] == "EG4030"
        assert device["serial_number"] == "G12345"
        assert device["sw_version"] == "4.6.2"
        assert device["configuration_url"] == "https://egauge12345.local"
        assert device["via_device"] == "egauge_gateway_site-a"
        assert isinstance(cfg["origin"], dict)
        assert cfg["origin"]["name"] == "egauge-gateway"
    grid = result["homeassistant/sensor/egauge_G12345/grid/config"]
    assert grid["unique_id"] == "egauge_G12345_grid"
    assert grid["state_topic"] == "egauge/main/register/grid"
    energy = result["homeassistant/sensor/egauge_G12345/grid-energy/config"]
    assert energy["unique_id"] == "egauge_G12345_grid-energy"
    # its own topic below the register's, so that mqtt.min_interval_s spares the recorder
    assert energy["state_topic"] == "egauge/main/register/grid/energy"
    assert energy["value_template"] == "{{ value }}"
    assert energy["device_class"] == "energy"
    assert energy["unit_of_measurement"] == "kWh"
    unique_ids = [c["unique_id"] for c in result.values()]
    assert len(set(unique_ids)) == len(unique_ids)


def test_entity_ids_come_from_the_meter_id_and_the_slug() -> None:
    """sensor.<meter>_<slug> (and _energy) in both the key old Home Assistant versions read
    (object_id) and the one 2025.10 and later read (default_entity_id); unique_ids as before."""
    regs = [RegisterInfo("Solar+", "P", 0, 0), RegisterInfo("Volts", "V", 1, 1)]
    d = MeterDiscovery(TOPICS, "site-a", replace(METER, id="site-b"), IDENT, 99, True)
    result = {t: json.loads(p) for t, p in d.configs(
        [(regs[0], "solar_plus"), (regs[1], "volts")]).items()}
    ids = {c["unique_id"]: (c["object_id"], c["default_entity_id"]) for c in result.values()}
    assert ids == {
        "egauge_G12345_solar_plus": ("site_b_solar_plus", "sensor.site_b_solar_plus"),
        "egauge_G12345_solar_plus-energy": ("site_b_solar_plus_energy",
                                            "sensor.site_b_solar_plus_energy"),
        "egauge_G12345_volts": ("site_b_volts", "sensor.site_b_volts"),
    }
    bridge = json.loads(bridge_config(TOPICS, "site-a")[1])
    assert (bridge["object_id"], bridge["default_entity_id"]) == (
        "egauge_gateway_site_a_bridge", "binary_sensor.egauge_gateway_site_a_bridge")


def test_energy_only_for_power_registers() -> None:
    """kWh for real power, kVAh for apparent, kvarh for reactive power (both codes); no total
    for a voltage, a frequency or a temperature, whose time integral means nothing."""
    regs = [RegisterInfo("Grid", "P", 0, 0), RegisterInfo("VA", "S", 1, 1),
            RegisterInfo("Volts", "V", 2, 2), RegisterInfo("Q1", "var", 3, 3),
            RegisterInfo("Q2", "PQ", 4, 4), RegisterInfo("Hz", "F", 5, 5),
            RegisterInfo("Temp", "T", 6, 6)]
    energy = {t: c for t, c in configs(regs).items() if "-energy/" in t}
    units = {t.split("/")[3]: (c["unit_of_measurement"], c.get("device_class"))
             for t, c in energy.items()}
    # Home Assistant's energy class takes Wh units only; kVAh and kvarh go without a class
    assert units == {"grid-energy": ("kWh", "energy"), "va-energy": ("kVAh", None),
                     "q1-energy": ("kvarh", None), "q2-energy": ("kvarh", None)}


def test_energy_state_class_never_total_increasing_for_what_can_run_backwards() -> None:
    assert energy_state_class(RegisterInfo("Solar+", "P", 0, 0), net=False) == "total_increasing"
    assert energy_state_class(RegisterInfo("Grid", "P", 0, 0), net=False) == "total"
    assert energy_state_class(RegisterInfo("Solar+", "P", 0, 0), net=True) == "total"
    minus = RegisterInfo("Net+", "P", 5, None, '+"Grid"-"Solar"')
    assert energy_state_class(minus, net=False) == "total"
    result = configs([RegisterInfo("Solar+", "P", 0, 0)], net=frozenset({"Solar+"}))
    assert result["homeassistant/sensor/egauge_G12345/solar_plus-energy/config"][
        "state_class"] == "total"


def test_expire_after_configured_or_derived() -> None:
    mqtt = MqttConfig(max_silence_s=60.0)
    # derived: longest silence (heartbeat 60 s vs 3 polls x 2 s) + 2 intervals + 10 s margin
    assert expire_after(METER, mqtt) == 60 + 4 + 10
    no_registers = MqttConfig(per_register_topics=False)
    assert expire_after(METER, no_registers) == 6 + 4 + 10
    fixed = MqttConfig(homeassistant=HomeAssistant(expire_after_s=300))
    assert expire_after(METER, fixed) == 300


def test_bridge_device_for_via_device() -> None:
    topic, payload = bridge_config(TOPICS, "site-a")
    cfg = json.loads(payload)
    assert topic == "homeassistant/binary_sensor/egauge_gateway_site-a/bridge/config"
    assert cfg["state_topic"] == "egauge/bridge/state"
    assert cfg["device"]["identifiers"] == ["egauge_gateway_site-a"]


def _template_lookup(template: str, state: dict[str, object]) -> object:
    """Evaluate the one template shape the gateway uses, without Jinja."""
    m = re.fullmatch(r"\{\{ value_json\.registers\['([a-z0-9_]+)'\]"
                     r"(?:\.(\w+)|\['(\w+)'\]) \}\}", template)
    assert m, template
    registers = state["registers"]
    assert isinstance(registers, dict)
    return registers[m.group(1)][m.group(2) or m.group(3)]


def test_value_templates_find_their_values_in_the_state_json() -> None:
    plan = MeterPlan(METER, TOPICS)
    plan.identity = IDENT
    plan.set_registers((RegisterInfo("Solar+", "P", 0, 0), RegisterInfo("Temp Büro", "T", 1, 1)))
    plan.build_discovery("site-a", 99, per_register=False)
    values = (RegisterValue("Solar+", "P", "W", 1234.0, 56.25, "kWh", 202500000),
              RegisterValue("Temp Büro", "T", "°C", 21.5, 1.0, "°C·s", 1000))
    state = json.loads(plan.state_json(Reading("main", 1700000000.5, values), 1700000001.0))
    by_unique = {c["unique_id"]: c for c in map(json.loads, plan.discovery.values())}
    solar = by_unique["egauge_G12345_solar_plus"]
    assert _template_lookup(solar["value_template"], state) == 1234.0
    assert _template_lookup(by_unique["egauge_G12345_solar_plus-energy"]["value_template"],
                            state) == 56.25
    assert _template_lookup(by_unique["egauge_G12345_temp_buro"]["value_template"], state) == 21.5


def test_counter_templates_find_the_counters_in_the_state_json() -> None:
    plan = MeterPlan(METER, TOPICS)
    plan.identity = IDENT
    plan.set_registers((RegisterInfo("Grid", "P", 0, 0),))
    plan.build_discovery("site-a", 99, per_register=False)
    counts = EnergyCount(7_200_000, 1_800_000, 1699999999, 1 / 3.6e6, "kWh")
    values = (RegisterValue("Grid", "P", "W", -500.0, 1.5, "kWh", 5_400_000, counts),)
    state = json.loads(plan.state_json(Reading("main", 1700000000.5, values), 1700000001.0))
    assert state["registers"]["grid"]["energy_through"] == 1699999999
    by_unique = {c["unique_id"]: c for c in map(json.loads, plan.discovery.values())}
    for role, kwh in (("import", 2.0), ("export", 0.5)):
        config = by_unique[f"egauge_G12345_grid-{role}"]
        assert config["state_topic"] == "egauge/main/state"
        assert _template_lookup(config["value_template"], state) == kwh


def test_state_json_fields() -> None:
    plan = MeterPlan(METER, TOPICS)
    plan.set_registers((RegisterInfo("Grid", "P", 0, 0), RegisterInfo("Dead", "V", 1, 1)))
    values = (RegisterValue("Grid", "P", "W", -412, 41.5, "kWh"),
              RegisterValue("Dead", "V", "V", None, math.nan, "V·s"))
    state = json.loads(plan.state_json(Reading("main", 1700000000.25, values), 1700000002.0))
    assert state["meter"] == "main"
    assert state["ts"] == 1700000000.25
    assert state["age"] == 1.75
    assert state["registers"]["grid"] == {"name": "Grid", "type": "P", "unit": "W",
                                          "cumulative_unit": "kWh", "rate": -412,
                                          "cumulative": 41.5}
    assert state["registers"]["dead"]["rate"] is None
    assert state["registers"]["dead"]["cumulative"] is None  # NaN is not JSON
    assert state["local"] == {}


def test_a_plus_register_seen_running_backwards_becomes_net() -> None:
    plan = MeterPlan(METER, TOPICS)
    plan.set_registers((RegisterInfo("Solar+", "P", 0, 0), RegisterInfo("Grid", "P", 1, 1)))

    def reading(rate: float, cum: float) -> Reading:
        return Reading("main", 1.0, (RegisterValue("Solar+", "P", "W", rate, cum, "kWh"),
                                     RegisterValue("Grid", "P", "W", -5.0, cum, "kWh")))

    assert plan.newly_net(reading(10.0, 5.0)) == []
    assert plan.newly_net(reading(10.0, 6.0)) == []
    assert plan.newly_net(reading(10.0, 5.5)) == ["Solar+"]  # cumulative went down
    assert plan.net == {"Solar+"}
    assert plan.newly_net(reading(-1.0, 4.0)) == []  # reported once only
