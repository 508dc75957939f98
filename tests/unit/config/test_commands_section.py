"""The top-level ``commands:`` section (the command path's limits), ``mqtt.protocol`` and
``mqtt.response_topics`` of gateway.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import CommandLimits, Config, parse_config
from gateway.errors import ConfigError

METER = {"id": "main", "url": "http://meter", "username": "owner", "password": "${PW}",
         "commands": {"allow": ["reboot"], "reboot_cooldown_s": 60, "timeout_s": 5}}


def parse(**sections: Any) -> Config:
    return parse_config({"meters": [METER], **sections}, env={"PW": "x", "Q": "12"})


def problems(**sections: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(**sections)
    return list(info.value.problems)


def test_defaults_when_absent_or_empty() -> None:
    expected = CommandLimits(queue=8, rate=30, rate_window_s=60.0, dedup_window_s=600.0,
                             inbox=256)
    assert parse().commands == expected
    assert parse(commands=None).commands == expected
    assert parse(commands={}).commands == expected


def test_every_key_and_the_meters_own_commands_section_still_works() -> None:
    config = parse(commands={"queue": "${Q}", "rate": 100, "rate_window_s": 10,
                             "dedup_window_s": 0, "inbox": 64})
    assert config.commands == CommandLimits(queue=12, rate=100, rate_window_s=10.0,
                                            dedup_window_s=0.0, inbox=64)
    [meter] = config.meters
    assert (meter.commands.allow, meter.commands.reboot_cooldown_s,
            meter.commands.timeout_s) == (("reboot",), 60.0, 5.0)


def test_every_problem_at_once() -> None:
    assert problems(commands={"queue": 0, "rate": "many", "rate_window_s": 0,
                              "dedup_window_s": -1, "inbox": 10**6, "allow": []}) == [
        "commands.allow: unknown key",
        "commands.queue: must be an integer 1-10000 (got 0)",
        "commands.rate: must be an integer 1-1000000 (got 'many')",
        "commands.rate_window_s: must be a number > 0 (got 0)",
        "commands.dedup_window_s: must be a number >= 0 (got -1)",
        "commands.inbox: must be an integer 1-100000 (got 1000000)",
    ]


def test_a_commands_section_that_is_not_a_mapping() -> None:
    assert problems(commands=[1]) == ["commands: must be a mapping (got [1])"]


@pytest.mark.parametrize("protocol", ["auto", "3.1.1", "5"])
def test_mqtt_protocols(protocol: str) -> None:
    assert parse(mqtt={"protocol": protocol}).mqtt.protocol == protocol


def test_mqtt_protocol_defaults_to_auto_and_refuses_others() -> None:
    assert parse().mqtt.protocol == "auto"
    assert problems(mqtt={"protocol": "3.1"}) == [
        "mqtt.protocol: must be auto, 3.1.1 or 5 (got '3.1')"]


def test_response_topics_default_to_the_clients_namespace_of_the_base_topic() -> None:
    mqtt = parse(mqtt={"base_topic": "site/egauge"}).mqtt
    assert mqtt.response_topics is None
    assert mqtt.response_filters == ("site/egauge/clients/#",)


def test_response_topics_given_and_empty() -> None:
    mqtt = parse(mqtt={"response_topics": ["replies/+/egauge", "app/#", "exact/topic"]}).mqtt
    assert mqtt.response_filters == ("replies/+/egauge", "app/#", "exact/topic")
    assert parse(mqtt={"response_topics": []}).mqtt.response_filters == ()


def test_bad_response_topics() -> None:
    assert problems(mqtt={"response_topics": ["a/#/b", "a+/b", "$SYS/#", "", 5]}) == [
        f"mqtt.response_topics[{i}]: must be an MQTT topic filter such as egauge/clients/# "
        f"(+ for one whole level, # only last, no leading $) (got {got})"
        for i, got in enumerate(["'a/#/b'", "'a+/b'", "'$SYS/#'", "''", "5"])
    ]
    assert problems(mqtt={"response_topics": "app/#"}) == [
        "mqtt.response_topics: must be a list of MQTT topic filters (an empty list: none) "
        "(got 'app/#')"]
