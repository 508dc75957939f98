"""The configuration of the energy counters and what goes with them: ``energy:`` (top level
and per meter), ``meters[].invert``, ``mqtt.deadband`` and ``mqtt.min_interval_s``,
``http.url``."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import Config, EnergyConfig, HttpConfig, parse_config
from gateway.errors import ConfigError

METER = {"id": "main", "url": "http://meter", "username": "owner", "password": "${PW}"}


def parse(**sections: Any) -> Config:
    data: dict[str, Any] = {"meters": [METER], **sections}
    return parse_config(data, env={"PW": "x"})


def problems(**sections: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(**sections)
    return list(info.value.problems)


def test_defaults() -> None:
    config = parse()
    assert config.energy == EnergyConfig(enabled=True, origin="zero", registers=None)
    assert config.meters[0].energy == config.energy
    assert config.meters[0].invert == ()
    assert (config.mqtt.min_interval_s, config.mqtt.deadband) == (10.0, ())
    assert config.http.url is None


def test_a_meter_section_overrides_the_top_level_one_key_by_key() -> None:
    config = parse(
        energy={"origin": "meter", "registers": ["Grid", "Solar"]},
        meters=[{**METER, "energy": {"registers": "auto"}, "invert": ["Solar", "Panel A/B"]},
                {**METER, "id": "b", "modbus_unit_id": 2, "energy": {"enabled": False}}])
    main, b = config.meters
    assert main.energy == EnergyConfig(True, "meter", None)
    assert main.invert == ("Solar", "Panel A/B")
    assert b.energy == EnergyConfig(False, "meter", ("Grid", "Solar"))


def test_every_problem_at_once() -> None:
    assert problems(
        energy={"origin": "epoch", "registers": "all", "enable": True},
        meters=[{**METER, "invert": "Solar", "energy": {"registers": ["Grid", "Grid", 5]}}],
        mqtt={"min_interval_s": 90, "deadband": {"P": -1, "V": "x"}},
        http={"url": "gw.local:9120"},
    ) == [
        "energy.enable: unknown key (did you mean 'enabled'?)",
        "energy.registers: must be 'auto' or a list of register names (got 'all')",
        "energy.origin: must be zero or meter (got 'epoch')",
        "meters[0].energy.registers[1]: duplicate register 'Grid' (also registers[0])",
        "meters[0].energy.registers[2]: must be a non-empty string (quote names that look "
        "like numbers) (got 5)",
        "meters[0].invert: must be a list of register names (got 'Solar')",
        "mqtt.min_interval_s: must not exceed max_silence_s (60) (got 90)",
        "mqtt.deadband.P: must be a number >= 0 (got -1)",
        "mqtt.deadband.V: must be a number >= 0 (got 'x')",
        "http.url: must be an http:// or https:// address (got 'gw.local:9120')",
    ]


def test_deadbands_per_type_code() -> None:
    mqtt = parse(mqtt={"deadband": {"P": 10, "V": 0.5}, "min_interval_s": 0}).mqtt
    assert (mqtt.deadband_for("P"), mqtt.deadband_for("V"), mqtt.deadband_for("I")) == (
        10.0, 0.5, 0.0)
    assert mqtt.min_interval_s == 0.0


@pytest.mark.parametrize(("http", "url"), [
    (HttpConfig(host="127.0.0.1", port=9120), "http://127.0.0.1:9120/"),
    (HttpConfig(host="::1", port=80), "http://[::1]:80/"),
    (HttpConfig(host="0.0.0.0", port=9120), None),
    (HttpConfig(host="0.0.0.0", url="https://gw.example/status"),
     "https://gw.example/status"),
])
def test_the_status_page_address_for_links(http: HttpConfig, url: str | None) -> None:
    assert http.status_url == url
