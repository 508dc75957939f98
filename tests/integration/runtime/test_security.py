"""Security defaults, end to end: no secret in any log line, topic, payload, status page or
/metrics of a full run; a world-readable file with a plain password is refused (exit 78);
TLS verified by default towards meters and broker; the HTTP endpoint on loopback only;
commands and Modbus writes denied unless allowed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import trustme
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import load_config, parse_config
from gateway.mqtt import MqttConnection
from gateway.runtime import App
from gateway.simulator import REALM, SimMeter, SimServer, ThreadedSimServer
from tests.support.broker import Broker, free_port
from tests.support.mqtt import (
    password_broker,
    running,
    subscriber,
    tls_broker,
)
from tests.support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
A_PW, B_PW, C_WRONG, MQTT_PW, SPY_PW = ("A-env-S3cret!", "B-cred-S3cret?", "C-wrong-S3cret",
                                        "mqtt-file-S3cret", "spy-S3cret")


def gateway(*args: str, env: dict[str, str] | None = None, log: Path | None = None
            ) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    err = log.open("wb") if log is not None else subprocess.PIPE
    return subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=err)


def non_loopback_address() -> str:
    """An address of this host that is not loopback (the one a default route would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.254", 9))  # no packet is sent for a UDP connect
        address = str(s.getsockname()[0])
    if address.startswith("127."):
        pytest.fail("this host has no non-loopback IPv4 address to test against")
    return address


def recording_tokens(meter: SimMeter) -> list[str]:
    """Every JWT ``meter`` issues from now on."""
    issued: list[str] = []
    issue = meter.authority.issue

    def recorded(usr: str) -> str:
        token = issue(usr)
        issued.append(token)
        return token

    meter.authority.issue = recorded  # type: ignore[method-assign]
    return issued


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return bytes(reply.read())


@pytest.fixture
def meters() -> Iterator[tuple[list[SimMeter], ThreadedSimServer]]:
    group = [SimMeter("SIM0901", password=A_PW), SimMeter("SIM0902", password=B_PW),
             SimMeter("SIM0903", password="C-real-password")]
    with ThreadedSimServer(group) as sim:
        yield group, sim


def test_no_secret_in_logs_topics_payloads_status_or_metrics(
        tmp_path: Path, topic_prefix: str,
        meters: tuple[list[SimMeter], ThreadedSimServer]) -> None:
    (a, b, c), sim = meters
    tokens_a, tokens_b = recording_tokens(a), recording_tokens(b)
    broker = password_broker(tmp_path / "mq", {"gw": MQTT_PW, "spy": SPY_PW})
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "meter-b").write_text(B_PW + "\n")
    (tmp_path / "mqtt.pw").write_text(MQTT_PW + "\n")
    (tmp_path / "meter-c.pw").write_text(C_WRONG + "\n")
    http_port, p = free_port(), topic_prefix
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
gateway: {{id: sec, log_level: debug, log_format: json, state_dir: "{tmp_path / 'state'}"}}
meters:
  - {{id: a, url: "{sim.url_for(a)}", username: owner, password: "${{METER_A_PW}}",
     poll_interval_s: 0.5}}
  - {{id: b, url: "{sim.url_for(b)}", username: owner, password_credential: meter-b,
     poll_interval_s: 0.5, modbus_unit_id: 2}}
  - {{id: c, url: "{sim.url_for(c)}", username: owner, password_file: meter-c.pw,
     poll_interval_s: 0.5, modbus_unit_id: 3}}
mqtt: {{host: {broker.host}, port: {broker.port}, base_topic: {p}, username: gw,
        password_file: mqtt.pw, homeassistant: {{prefix: {p}-ha}}}}
modbus: {{enabled: false}}
http: {{port: {http_port}}}
""")
    config.chmod(0o600)
    log = tmp_path / "gateway.log"
    pages: list[bytes] = []
    try:
        with subscriber(broker, "#", username="spy", password=SPY_PW) as spy:
            proc = gateway("run", "-c", str(config), log=log,
                           env={"METER_A_PW": A_PW, "CREDENTIALS_DIRECTORY": str(creds)})
            try:
                for meter_id in ("a", "b"):
                    spy.wait_for(f"{p}/{meter_id}/state", timeout=30)
                wait_until(lambda: c.authority.login_failures >= 2, timeout=30,
                           what="meter c refusing the wrong password (twice: backoff)")
                a.revoke_tokens()  # a re-login mid-run: a second token for meter a
                wait_until(lambda: a.logins >= 2, what="meter a logged in again")
                spy.client.publish(f"{p}/a/request/reboot", json.dumps({"transaction": "t1"}),
                                   qos=1)
                spy.wait_for(f"{p}/a/response/reboot")
                base = f"http://127.0.0.1:{http_port}"
                for path in ("/metrics", "/", "/readyz", "/healthz"):
                    pages.append(fetch(base + path))
                with pytest.raises(ConnectionRefusedError):  # loopback only
                    socket.create_connection((non_loopback_address(), http_port), timeout=2)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(20)
    finally:
        broker.stop()
    tokens = tokens_a + tokens_b
    text = log.read_bytes()
    assert code == 0, text[-2000:]
    assert len(tokens_a) >= 2
    assert len(tokens_b) >= 1
    assert b'"meter_logged_in"' in text
    assert b'"level": "debug"' in text
    assert b'"event": "meter_login_failed"' in text  # c's refused logins were logged
    assert b"egauge_" in pages[0] or b"# HELP" in pages[0]
    passwords = (A_PW, B_PW, C_WRONG, MQTT_PW)
    secrets = [s.encode() for s in passwords]
    secrets += [hashlib.md5(f"owner:{REALM}:{pw}".encode()).hexdigest().encode()
                for pw in passwords]
    secrets += [t.encode() for t in tokens] + [t.rpartition(".")[2].encode() for t in tokens]
    messages = [(m.topic.encode(), m.payload) for m in spy.messages]
    assert len(messages) > 20
    for secret in secrets:
        assert secret not in text, "a secret in the log"
        for topic, payload in messages:
            assert secret not in topic, f"a secret in {topic!r}"
            assert secret not in payload, f"a secret on {topic!r}"
        for page in pages:
            assert secret not in page, "a secret on the HTTP endpoint"


def test_a_world_readable_file_with_a_plain_password_is_refused_by_run(
        tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"""
gateway: {{state_dir: "{tmp_path / 'state'}"}}
meters:
  - {{id: main, url: "http://127.0.0.1:9", username: owner, password: "{A_PW}"}}
mqtt: {{username: gw, password: "{MQTT_PW}"}}
""")
    config.chmod(0o644)
    proc = gateway("run", "-c", str(config))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 78
    problems = err.decode().splitlines()
    assert problems == [
        "meters[0].password: plain-text password in a world-readable file (mode 0644); use "
        "${ENV}, password_file or password_credential, or chmod o-r the file",
        "mqtt.password: plain-text password in a world-readable file (mode 0644); use "
        "${ENV}, password_file or password_credential, or chmod o-r the file",
    ]
    assert A_PW not in err.decode()
    assert MQTT_PW not in err.decode()
    assert not (tmp_path / "state").exists()  # nothing was started
    config.chmod(0o600)
    check = gateway("check-config", "-c", str(config))
    assert check.wait(60) == 0


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def test_meter_tls_is_verified_by_default(ca: trustme.CA, tmp_path: Path) -> None:
    import ssl

    meter = SimMeter("SIM0904", password="pw")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with SimServer([meter], ssl=context) as server:
        config = tmp_path / "gateway.yaml"
        config.write_text(f"""
gateway: {{state_dir: "{tmp_path / 'state'}"}}
meters: [{{id: main, url: "{server.url_for(meter)}", username: owner, password: "${{PW}}",
          poll_interval_s: 0.25, offline_after: 1}}]
mqtt: {{enabled: false}}
modbus: {{enabled: false}}
http: {{enabled: false}}
""")
        cfg = load_config(config, env={"PW": "pw"})
        assert cfg.meters[0].verify_tls is True
        app = App(cfg)
        task = asyncio.create_task(app.run(), name="app")
        try:
            await async_wait_until(lambda: app.pollers and app.pollers["main"].stats.online
                                   is False, what="the meter refused")
            error = app.pollers["main"].stats.last_error
        finally:
            app.request_stop()
            assert await asyncio.wait_for(task, 20) == 0
    assert "certificate" in error.lower()
    assert meter.calls == []  # not one HTTP request went to an unverified meter


async def test_broker_tls_is_verified_by_default(tmp_path: Path) -> None:
    broker, files = tls_broker(tmp_path / "mq")
    try:
        base = {"meters": [{"id": "main", "url": "http://127.0.0.1:9", "username": "owner",
                            "password": "${PW}"}]}
        cfg = parse_config({**base, "mqtt": {"host": broker.host, "port": broker.port,
                                             "tls": True}}, env={"PW": "x"}).mqtt
        assert cfg.tls is not None
        assert cfg.tls.insecure is False
        conn = MqttConnection(cfg, client_id="tls-default", retry_min_s=0.2, retry_max_s=0.5)
        with structlog.testing.capture_logs() as logs:
            async with running(conn):
                await async_wait_until(
                    lambda: any(e["event"] == "mqtt_connect_failed" for e in logs),
                    what="a refused broker certificate")
                assert not conn.connected
        reasons = {e["reason"] for e in logs if e["event"] == "mqtt_connect_failed"}
        assert any("certificate verify failed" in r for r in reasons), reasons
        trusted = parse_config({**base, "mqtt": {"host": broker.host, "port": broker.port,
                                                 "tls": {"ca_file": str(files.ca_file)}}},
                               env={"PW": "x"}).mqtt
        conn = MqttConnection(trusted, client_id="tls-trusted")
        async with running(conn):
            await async_wait_until(lambda: conn.connected, what="connected with the CA")
    finally:
        broker.stop()


def test_defaults_keep_everything_closed() -> None:
    cfg = parse_config({"meters": [{"id": "main", "url": "https://meter", "username": "owner",
                                    "password": "${PW}"}]}, env={"PW": "x"})
    assert cfg.http.enabled
    assert cfg.http.host == "127.0.0.1"
    assert cfg.meters[0].verify_tls is True
    assert cfg.meters[0].commands.allow == ()
    assert cfg.modbus.writes is False
    assert cfg.mqtt.tls is None or cfg.mqtt.tls.insecure is False


@pytest.mark.parametrize("writes", [False, True])
async def test_modbus_writes_are_refused_unless_allowed(
        writes: bool, broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    """Writes off (the default): exception 0x01. Writes on but ``commands.allow`` empty:
    0x01 as well; the meter sees no command either way."""
    meter = SimMeter("SIM0905", password="pw")
    port = free_port()
    async with SimServer([meter]) as server:
        config = tmp_path / "gateway.yaml"
        config.write_text(f"""
gateway: {{state_dir: "{tmp_path / 'state'}"}}
meters: [{{id: main, url: "{server.url_for(meter)}", username: owner, password: "${{PW}}",
          poll_interval_s: 0.25}}]
mqtt: {{host: {broker.host}, port: {broker.port}, base_topic: {topic_prefix},
        homeassistant: {{enabled: false}}}}
modbus: {{host: 127.0.0.1, port: {port}{", writes: true" if writes else ""}}}
http: {{enabled: false}}
""")
        cfg = load_config(config, env={"PW": "pw"})
        app = App(cfg)
        task = asyncio.create_task(app.run(), name="app")
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
        try:
            await async_wait_until(lambda: app.pollers and app.pollers["main"].stats.online,
                                   what="the meter online")
            assert (app.router is not None) is True  # writes would go through the router
            assert await client.connect()
            coil = await client.write_coil(0, True, device_id=1)
            command = await client.write_register(90, 1, device_id=1)
        finally:
            client.close()
            app.request_stop()
            assert await asyncio.wait_for(task, 20) == 0
    assert coil.isError()
    assert coil.exception_code == 0x01
    assert command.isError()
    assert command.exception_code == 0x01
    assert meter.calls_to("/ctrl/call") == []
    assert meter.calls_to("/cmd/reboot") == []


def test_ruff_security_rules_are_on_and_the_package_passes_them() -> None:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]
    assert [rule for rule in lint.get("ignore", []) if rule.startswith("S")] == ["S101"]
    for pattern, rules in lint.get("per-file-ignores", {}).items():
        assert not pattern.startswith("gateway") or "S" not in rules, pattern
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.fail(f"ruff is not installed next to {sys.executable}")
    result = subprocess.run([str(ruff), "check", "--no-cache", "gateway"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_runtime_dependencies_have_upper_bounds() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        assert "<" in requirement, f"{requirement}: no upper bound"


def test_the_license_file_is_the_declared_mit_license() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) " in text
    assert "the egauge-gateway authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_the_lowest_versions_job_pins_every_requirement_to_its_lower_bound() -> None:
    """scripts/lowest_constraints.py (run by scripts/test-lowest in CI) covers every
    requirement of pyproject.toml -- runtime, build and each extra -- at its lower bound."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "lowest_constraints.py")],
                         capture_output=True, text=True, check=True).stdout
    pins = dict(line.split("==") for line in out.splitlines() if not line.startswith("#"))
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    every = [*data["build-system"]["requires"], *project["dependencies"],
             *(r for extra in project["optional-dependencies"].values() for r in extra)]
    for text in every:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "wheel":  # a build tool with no bound
            continue
        assert name in pins, f"{text}: not pinned by the lowest-versions job"
        lows = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert lows == [Version(pins[name])], text
        assert requirement.specifier.contains(pins[name])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test-lowest" in ci
