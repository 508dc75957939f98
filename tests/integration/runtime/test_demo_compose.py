"""The Docker demo stack and the image cannot be built here (no Docker daemon); what can be
checked without it: the compose file's gateway configuration passes the gateway's own checks,
every file the stack mounts or the Dockerfile copies exists, the ports it publishes are the
ones the configuration serves and are bound to loopback unless told otherwise, the broker
requires the password the gateway is given (checked against a real Mosquitto started with the
demo's own broker configuration), and the image installs exact, hashed versions
(requirements.lock) that satisfy pyproject.toml."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import load_config, load_yaml
from tests.support.broker import free_port, require_binary, start_broker

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::-(?P<default>[^}]*))?\}")


def compose() -> dict[str, Any]:
    data = load_yaml(DOCKER / "compose.yaml")
    assert isinstance(data, dict)
    return data


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """``${NAME:-default}`` as compose expands it (``env`` empty: every default)."""
    env = env or {}
    return _VARIABLE.sub(lambda m: env.get(m["name"]) or m["default"] or "", text)


def published(service: dict[str, Any], env: dict[str, str] | None = None
              ) -> list[tuple[str, str, str]]:
    """``(host address, host port, container port)`` of each published port."""
    ports = []
    for entry in service.get("ports", []):
        parts = interpolate(str(entry), env).split(":")
        assert len(parts) == 3, f"{entry}: a port without a host address binds every interface"
        ports.append((parts[0], parts[1], parts[2]))
    return ports


def test_the_compose_gateway_configuration_is_valid() -> None:
    env = {"EGAUGE_DEMO_PASSWORD": "pw", "MQTT_USERNAME": "gateway", "MQTT_PASSWORD": "m"}
    config = load_config(DOCKER / "gateway.yaml", env=env)
    [meter] = config.meters
    services = compose()["services"]
    assert meter.url == "http://meter:8080"
    assert "8080" in services["meter"]["command"]
    assert config.mqtt.host == "mosquitto"
    assert "EGAUGE_DEMO_PASSWORD" in services["gateway"]["environment"]
    container_ports = {container for _, _, container in published(services["gateway"])}
    assert container_ports == {str(config.modbus.port), str(config.http.port)}
    assert config.gateway.state_dir == "/var/lib/egauge-gateway"


def test_every_published_port_is_on_loopback_by_default_and_can_be_opened() -> None:
    services = compose()["services"]
    ports = [p for s in services.values() for p in published(s)]
    assert {p[2] for p in ports} == {"1883", "5020", "9120"}
    assert {address for address, _, _ in ports} == {"127.0.0.1"}
    opened = {"MQTT_BIND": "0.0.0.0", "MODBUS_BIND": "0.0.0.0", "HTTP_BIND": "0.0.0.0"}
    assert {p[0] for s in services.values() for p in published(s, opened)} == {"0.0.0.0"}
    assert "ports" not in services["meter"]  # the simulated meter stays inside


def test_the_gateway_gets_the_credentials_the_broker_is_given() -> None:
    services = compose()["services"]
    broker_env = services["mosquitto"]["environment"]
    gateway_env = services["gateway"]["environment"]
    for name in ("MQTT_USERNAME", "MQTT_PASSWORD"):
        assert broker_env[name] == gateway_env[name]
    config = load_config(DOCKER / "gateway.yaml", env={
        "EGAUGE_DEMO_PASSWORD": "pw", "MQTT_USERNAME": "u1", "MQTT_PASSWORD": "p1"})
    assert config.mqtt.username == "u1"
    assert config.mqtt.password is not None
    assert config.mqtt.password.reveal() == "p1"


def _connects(port: int, username: str | None, password: str | None) -> bool:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"compose-check-{username}")
    if username is not None:
        client.username_pw_set(username, password)
    result: list[bool] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: result.append(not reason.is_failure)
    client.connect("127.0.0.1", port, 10)
    deadline = 100
    while not result and deadline:
        client.loop(0.1)
        deadline -= 1
    client.disconnect()
    return bool(result and result[0])


def test_the_demo_broker_requires_the_password(tmp_path: Path) -> None:
    """The broker as compose runs it: its own mosquitto.conf, the password file written by
    the command compose gives it; anonymous clients and wrong passwords are refused."""
    conf = (DOCKER / "mosquitto.conf").read_text()
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    passwd_path = re.search(r"^password_file (\S+)$", conf, re.M)
    assert passwd_path is not None
    command = compose()["services"]["mosquitto"]["command"]
    assert command[:2] == ["sh", "-c"]
    script = command[2]
    assert f"mosquitto_passwd -c -b {passwd_path[1]}" in script
    assert "umask 077" in script
    passwd = tmp_path / "passwd"
    subprocess.run([require_binary("mosquitto_passwd"), "-c", "-b", str(passwd), "gateway",
                    "demo-mqtt-pw"], check=True)
    passwd.chmod(0o600)
    port = free_port()
    ours = re.sub(r"^listener \d+$", "", conf.replace(passwd_path[1], str(passwd)), flags=re.M)
    broker = start_broker(tmp_path / "mosquitto", "user root\n" + ours, port=port)
    try:
        assert _connects(port, "gateway", "demo-mqtt-pw")
        assert not _connects(port, None, None)
        assert not _connects(port, "gateway", "wrong")
    finally:
        broker.stop()


def test_every_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), f"{name}: {source}"


def dockerfile_runs() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_every_file_the_dockerfile_copies_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            for source in words[1:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"


def test_the_image_installs_the_lock_with_hashes_and_the_gateway_without_resolving() -> None:
    commands = [shlex.split(c) for run in dockerfile_runs() for c in run.split("&&")]
    installs = [c for c in commands if c[1:3] == ["install", "--no-cache-dir"] and "pip" in c[0]]
    assert len(installs) == 2, installs
    locked, project = installs
    assert {"--require-hashes", "-r", "requirements.lock"} <= set(locked)
    assert {"--only-binary", ":all:"} <= set(locked)
    assert {"--no-deps", "--no-build-isolation", "."} <= set(project)
    assert (ROOT / "Dockerfile").read_text().index("requirements.lock") < (
        ROOT / "Dockerfile").read_text().index("COPY gateway")  # the lock first: cached layer


def lock() -> dict[str, tuple[Version, list[str]]]:
    """The lock file: name -> (version, hashes)."""
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    pinned: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"an option in the lock: {line}"
        spec, *hashes = line.split()
        name, _, version = spec.partition("==")
        assert version, f"{spec}: not pinned to an exact version"
        assert hashes, f"{spec}: no hash"
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), spec
        pinned[canonicalize_name(name)] = (Version(version), hashes)
    return pinned


def test_the_lock_satisfies_every_runtime_and_build_requirement() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pinned = lock()
    wanted = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in requirements.lock (scripts/lock)"
        assert requirement.specifier.contains(pinned[name][0], prereleases=True), (
            f"requirements.lock has {name} {pinned[name][0]}, pyproject wants {requirement}")
    for name in pinned:  # and nothing from the test extra
        assert name not in {"pytest", "hypothesis", "ruff", "mypy", "pymodbus"}


def test_the_lock_has_every_file_of_a_binary_package() -> None:
    """The hashes of every file PyPI has for a version, not only this machine's wheel, so that
    a build on another platform (arm64) verifies too: PyYAML ships a wheel per platform."""
    _, hashes = lock()["pyyaml"]
    assert len(hashes) > 10
