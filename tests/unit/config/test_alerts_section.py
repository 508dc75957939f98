"""A meter's ``alerts:`` key and the ``commands.ctid_cooldown_s`` it sits beside."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import AlertsConfig, MeterConfig, parse_config
from gateway.errors import ConfigError

METER = {"id": "main", "url": "http://meter", "username": "owner", "password": "${PW}"}


def parse(**keys: Any) -> MeterConfig:
    return parse_config({"meters": [{**METER, **keys}]}, env={"PW": "x"}).meters[0]


def problems(**keys: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(**keys)
    return list(info.value.problems)


def test_alerts_are_off_by_default_and_read_every_minute_when_on() -> None:
    assert parse().alerts == AlertsConfig(enabled=False, interval_s=60.0)
    assert parse(alerts={"enabled": True}).alerts == AlertsConfig(enabled=True, interval_s=60.0)
    assert parse(alerts={"enabled": True, "interval_s": 5}).alerts == AlertsConfig(True, 5.0)


def test_bad_alert_settings_are_reported_each() -> None:
    assert problems(alerts={"enabled": "sometimes", "interval_s": 0.5, "every": 1}) == [
        "meters[0].alerts.every: unknown key",
        "meters[0].alerts.interval_s: must be a number >= 1 (got 0.5)",
        "meters[0].alerts.enabled: must be true or false (got 'sometimes')",
    ]


def test_the_ctid_cooldown_is_a_minute_by_default_and_may_be_zero() -> None:
    assert parse().commands.ctid_cooldown_s == 60.0
    assert parse(commands={"ctid_cooldown_s": 0}).commands.ctid_cooldown_s == 0.0
    assert parse(commands={"ctid_cooldown_s": 0}).commands.cooldown_s("ctid") == 0.0
    assert parse(commands={"ctid_cooldown_s": 0}).commands.cooldown_s("reboot") == 300.0
    assert problems(commands={"ctid_cooldown_s": -1}) == [
        "meters[0].commands.ctid_cooldown_s: must be a number >= 0 (got -1)"]
