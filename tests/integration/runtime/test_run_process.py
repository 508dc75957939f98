"""``python -m gateway run -c FILE`` as a real process against a threaded simulator: the will
on SIGKILL, a clean offline and exit 0 on SIGTERM, exit codes 78 and 3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.mqtt import subscriber

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "s1m-Pa55-7f3a"


def write_config(path: Path, broker: Broker, prefix: str, sim_url: str, state_dir: Path,
                 *, gateway_id: str = "proc") -> Path:
    path.write_text(
        f"""
gateway: {{id: {gateway_id}, log_level: info, log_format: json, state_dir: "{state_dir}",
          shutdown_timeout_s: 5}}
meters:
  - id: main
    url: {sim_url}
    username: owner
    password: ${{SIM_PASSWORD}}
    poll_interval_s: 0.5
mqtt:
  host: {broker.host}
  port: {broker.port}
  base_topic: {prefix}
  homeassistant: {{prefix: {prefix}-ha}}
modbus: {{enabled: false}}
http: {{enabled: false}}
"""
    )
    return path


def start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SIM_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )


@pytest.fixture
def simulator() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0301", password=PASSWORD)
    with ThreadedSimServer([meter]) as sim:
        yield meter, sim.url_for(meter)


def running_gateway(tmp_path: Path, broker: Broker, prefix: str, url: str
                    ) -> tuple[subprocess.Popen[bytes], Path]:
    config = write_config(tmp_path / "gateway.yaml", broker, prefix, url, tmp_path / "state")
    log = tmp_path / "gateway.log"
    return start_gateway(config, log), log


def test_sigkill_leaves_the_will(broker: Broker, topic_prefix: str, tmp_path: Path,
                                 simulator: tuple[SimMeter, str]) -> None:
    p = topic_prefix
    with subscriber(broker, f"{p}/#") as sub:
        proc, log = running_gateway(tmp_path, broker, p, simulator[1])
        try:
            sub.wait_for(f"{p}/bridge/state", lambda m: m.payload == b"online")
            sub.wait_for(f"{p}/main/availability", lambda m: m.payload == b"online")
            sub.clear()
            proc.kill()
            proc.wait(10)
            will = sub.wait_for(f"{p}/bridge/state", lambda m: m.payload == b"offline")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert will.payload == b"offline"
    # the meter's own availability was not touched: only the will speaks for a dead gateway
    assert sub.on(f"{p}/main/availability") == []
    assert proc.returncode == -signal.SIGKILL, log.read_text()


def test_sigterm_publishes_offline_and_exits_0(broker: Broker, topic_prefix: str,
                                               tmp_path: Path,
                                               simulator: tuple[SimMeter, str]) -> None:
    p = topic_prefix
    meter, url = simulator
    with subscriber(broker, f"{p}/#") as sub:
        proc, log = running_gateway(tmp_path, broker, p, url)
        try:
            sub.wait_for(f"{p}/main/state")
            logouts_before = len(meter.calls_to("/auth/logout"))
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(10)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        sub.wait_for(f"{p}/bridge/state", lambda m: m.payload == b"offline")
        sub.wait_for(f"{p}/main/availability", lambda m: m.payload == b"offline")
    text = log.read_text()
    assert code == 0, text
    assert took < 5.0  # gateway.shutdown_timeout_s
    assert len(meter.calls_to("/auth/logout")) == logouts_before + 1
    assert '"gateway_stopped"' in text
    assert PASSWORD not in text


def test_invalid_configuration_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("gateway: {id: Bad Id}\nmeters: []\n")
    log = tmp_path / "log"
    proc = start_gateway(config, log)
    assert proc.wait(30) == 78
    assert "id" in log.read_text()


def test_start_up_failure_exits_3(broker: Broker, topic_prefix: str, tmp_path: Path,
                                  simulator: tuple[SimMeter, str]) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = write_config(tmp_path / "gateway.yaml", broker, topic_prefix, simulator[1],
                          blocker / "state")
    log = tmp_path / "log"
    proc = start_gateway(config, log)
    assert proc.wait(30) == 3
    assert "startup_failed" in log.read_text()


