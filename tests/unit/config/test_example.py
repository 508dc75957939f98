"""The repository's documented gateway.yaml is valid, and YAML-level errors are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config, load_yaml
from gateway.errors import ConfigError, MappingError
from gateway.secret import Secret

EXAMPLE = Path(__file__).resolve().parents[3] / "gateway.yaml"
EXAMPLE_ENV = {"EGAUGE_MAIN_PASSWORD": "main-pw", "EGAUGE_GARAGE_PASSWORD": "garage-pw"}


def test_example_loads() -> None:
    config = load_config(EXAMPLE, env=EXAMPLE_ENV)
    assert [m.id for m in config.meters] == ["main", "garage"]
    main, garage = config.meters
    assert main.password == Secret("main-pw")
    assert garage.password == Secret("garage-pw")
    assert garage.username == "owner"  # ${EGAUGE_GARAGE_USER:-owner}
    assert {main.modbus_unit_id, garage.modbus_unit_id} == {1, 2}
    assert main.timeout_s < main.poll_interval_s
    assert garage.timeout_s < garage.poll_interval_s
    assert config.mqtt.host == "localhost"


def test_example_names_every_variable_it_needs() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, env={})
    assert info.value.problems == (
        "meters[0].password: environment variable EGAUGE_MAIN_PASSWORD is not set",
        "meters[1].password: environment variable EGAUGE_GARAGE_PASSWORD is not set",
    )


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == (f"{path}: cannot read: No such file or directory",)


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("meters: [1\nmqtt: {}\n", "2:5", "expected ',' or ']', but got ':'"),
        ("mqtt:\n  port: 1\n  port: 2\n", "3:3", "duplicate key 'port'"),
        ("a: b: c\n", "1:5", "mapping values are not allowed here"),
    ],
)
def test_yaml_errors_name_line_and_column(tmp_path: Path, text: str, where: str,
                                          what: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert info.value.problems == (f"{path}:{where}: invalid YAML: {what}",)


def test_load_yaml_raises_the_requested_error_type(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("registers:\n  - {name: Grid, address: 0}\n")
    assert load_yaml(path) == {"registers": [{"name": "Grid", "address": 0}]}
    path.write_text("registers: [\n")
    with pytest.raises(MappingError):
        load_yaml(path, error=MappingError)


def test_load_yaml_refuses_python_tags(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert "could not determine a constructor" in info.value.problems[0]


def test_example_shows_the_command_limits_and_the_mqtt_request_settings() -> None:
    config = load_config(EXAMPLE, env=EXAMPLE_ENV)
    assert config.commands.inbox == 256
    assert config.mqtt.protocol == "auto"
    assert config.mqtt.response_filters == (f"{config.mqtt.base_topic}/clients/#",)
