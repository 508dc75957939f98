"""The keys that harden the gateway's edges: ``gateway.loop_stall_s`` and the Modbus
connection limits (``modbus.allow_from``, ``max_connections_per_address``,
``frame_timeout_s``)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import Config, GatewaySection, ModbusConfig, parse_config
from gateway.errors import ConfigError

METER = {"id": "main", "url": "http://meter", "username": "owner", "password": "${PW}"}


def parse(**sections: Any) -> Config:
    return parse_config({"meters": [METER], **sections}, env={"PW": "x", "NET": "10.1.0.0/16"})


def problems(**sections: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(**sections)
    return list(info.value.problems)


def test_defaults() -> None:
    config = parse()
    assert config.gateway.loop_stall_s == 30
    assert config.modbus.allow_from is None  # everyone, as before
    assert config.modbus.max_connections_per_address == 100
    assert config.modbus.frame_timeout_s == 5
    assert parse(modbus={}).modbus == ModbusConfig()
    assert parse(gateway={}).gateway == GatewaySection()


def test_every_key() -> None:
    config = parse(gateway={"loop_stall_s": 0},
                   modbus={"allow_from": ["192.168.1.0/24", "10.0.0.7", "FD00::/8", "${NET}"],
                           "max_connections_per_address": 8, "frame_timeout_s": 0.5})
    assert config.gateway.loop_stall_s == 0  # no loop watchdog
    assert config.modbus.allow_from == ("192.168.1.0/24", "10.0.0.7/32", "fd00::/8",
                                        "10.1.0.0/16")
    assert config.modbus.max_connections_per_address == 8
    assert config.modbus.frame_timeout_s == 0.5
    assert parse(modbus={"allow_from": None}).modbus.allow_from is None


def test_every_problem_at_once() -> None:
    assert problems(
        gateway={"loop_stall_s": 0.5},
        modbus={"allow_from": ["10.0.0.1/8", "not-an-ip", 7, "300.1.1.1"],
                "max_connections_per_address": 0, "frame_timeout_s": "soon"},
    ) == [
        "gateway.loop_stall_s: must be 0 (no loop watchdog) or a number >= 1 (got 0.5)",
        "modbus.allow_from[0]: has host bits set (did you mean 10.0.0.0/8?) (got '10.0.0.1/8')",
        "modbus.allow_from[1]: not an IP address or network ('not-an-ip' does not appear to be "
        "an IPv4 or IPv6 network) (got 'not-an-ip')",
        "modbus.allow_from[2]: must be an IP address or network such as 10.0.0.0/8 (got 7)",
        "modbus.allow_from[3]: not an IP address or network ('300.1.1.1' does not appear to be "
        "an IPv4 or IPv6 network) (got '300.1.1.1')",
        "modbus.max_connections_per_address: must be an integer 1-1000 (got 0)",
        "modbus.frame_timeout_s: must be a number > 0 (got 'soon')",
    ]


@pytest.mark.parametrize("value", [[], "10.0.0.0/8", {"net": "10.0.0.0/8"}])
def test_allow_from_is_a_non_empty_list(value: object) -> None:
    assert problems(modbus={"allow_from": value}) == [
        "modbus.allow_from: must be a non-empty list of networks such as 10.0.0.0/8 "
        f"(null: everyone) (got {value!r})"]


@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), ("fast", "'fast'"), (True, "true")])
def test_loop_stall_must_be_a_number(value: object, shown: str) -> None:
    assert problems(gateway={"loop_stall_s": value}) == [
        f"gateway.loop_stall_s: must be a number >= 0 (got {shown})"]
