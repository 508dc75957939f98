"""The Docker demo stack cannot run here (no Docker daemon); what can be checked without it:
the compose file's gateway configuration passes the gateway's own checks, every file the
stack mounts exists, and the ports it publishes are the ones the configuration serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import load_config, load_yaml

DOCKER = Path(__file__).resolve().parents[3] / "docker"


def compose() -> dict[str, Any]:
    data = load_yaml(DOCKER / "compose.yaml")
    assert isinstance(data, dict)
    return data


def test_the_compose_gateway_configuration_is_valid() -> None:
    config = load_config(DOCKER / "gateway.yaml", env={"EGAUGE_DEMO_PASSWORD": "pw"})
    [meter] = config.meters
    services = compose()["services"]
    assert meter.url == "http://meter:8080"
    assert "8080" in services["meter"]["command"]
    assert config.mqtt.host == "mosquitto"
    assert "EGAUGE_DEMO_PASSWORD" in services["gateway"]["environment"]
    published = {p.split(":")[-1] for p in services["gateway"]["ports"]}
    assert published == {str(config.modbus.port), str(config.http.port)}
    assert config.gateway.state_dir == "/var/lib/egauge-gateway"


def test_every_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), f"{name}: {source}"
