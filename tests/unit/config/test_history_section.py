"""The ``history:`` section of gateway.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import HistoryConfig, parse_config
from gateway.errors import ConfigError

METER = {"id": "main", "url": "http://meter", "username": "owner", "password": "${PW}"}


def parse(history: Any) -> HistoryConfig:
    data: dict[str, Any] = {"meters": [METER]}
    if history is not ...:
        data["history"] = history
    return parse_config(data, env={"PW": "x"}).history


def problems(history: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(history)
    return list(info.value.problems)


def test_defaults_when_absent_or_empty() -> None:
    expected = HistoryConfig(enabled=True, max_lookback_s=86_400, step_s=1, max_rows=600)
    assert parse(...) == expected
    assert parse(None) == expected
    assert parse({}) == expected


def test_every_key() -> None:
    got = parse({"enabled": False, "max_lookback_s": 3600, "step_s": 60, "max_rows": 50})
    assert got == HistoryConfig(enabled=False, max_lookback_s=3600, step_s=60, max_rows=50)


def test_every_problem_at_once() -> None:
    assert problems({"enabled": "yes", "max_lookback_s": 10, "step_s": 0, "max_rows": 1,
                     "stepp": 1}) == [
        "history.stepp: unknown key (did you mean 'step_s'?)",
        "history.max_lookback_s: must be an integer 60-31622400 (got 10)",
        "history.step_s: must be an integer 1-3600 (got 0)",
        "history.enabled: must be true or false (got 'yes')",
        "history.max_rows: must be an integer 2-100000 (got 1)",
    ]


def test_a_step_longer_than_the_look_back_is_refused() -> None:
    assert problems({"max_lookback_s": 600, "step_s": 900}) == [
        "history.step_s: must not exceed max_lookback_s (600) (got 900)"]


def test_a_section_that_is_not_a_mapping() -> None:
    assert problems([1]) == ["history: must be a mapping (got [1])"]
