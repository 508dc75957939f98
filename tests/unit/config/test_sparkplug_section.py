"""The ``sparkplug:`` section: defaults, every problem at once, ids that cannot break topics."""

from __future__ import annotations

import pytest

from gateway.config import SparkplugConfig, parse_config
from gateway.errors import ConfigError

BASE = {"meters": [{"id": "main", "url": "http://m", "username": "u", "password": "${PW}"}]}
ENV = {"PW": "secret"}


def parse(section: object) -> SparkplugConfig:
    return parse_config({**BASE, "sparkplug": section}, env=ENV).sparkplug


def problems(section: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "sparkplug": section}, env=ENV)
    return info.value.problems


def test_defaults_leave_sparkplug_off() -> None:
    config = parse_config(BASE, env=ENV)
    assert config.sparkplug == SparkplugConfig()
    assert config.sparkplug == SparkplugConfig(enabled=False, group_id="egauge",
                                               edge_node_id=None, primary_host_id=None,
                                               history=True)
    assert parse(None) == SparkplugConfig()


def test_every_key() -> None:
    got = parse({"enabled": True, "group_id": "Plant 1", "edge_node_id": "gw-east",
                 "primary_host_id": "ignition-01", "history": False})
    assert got == SparkplugConfig(True, "Plant 1", "gw-east", "ignition-01", False)


def test_every_problem_at_once() -> None:
    assert problems({"enabled": "yes please", "group_id": "a/b", "edge_node_id": "n+1",
                     "primary_host_id": "#", "histroy": True}) == (
        "sparkplug.histroy: unknown key (did you mean 'history'?)",
        "sparkplug.enabled: must be true or false (got 'yes please')",
        "sparkplug.group_id: must not contain /, +, # or control characters (got 'a/b')",
        "sparkplug.edge_node_id: must not contain /, +, # or control characters (got 'n+1')",
        "sparkplug.primary_host_id: must not contain /, +, # or control characters (got '#')",
    )


@pytest.mark.parametrize("value", ["", 7, "tab\there"])
def test_a_group_id_must_be_usable_text(value: object) -> None:
    problem, = problems({"group_id": value})
    assert problem.startswith("sparkplug.group_id: must ")


def test_a_section_that_is_no_mapping_is_one_problem() -> None:
    assert problems(["enabled"]) == ("sparkplug: must be a mapping (got ['enabled'])",)
