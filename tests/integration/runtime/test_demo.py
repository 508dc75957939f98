"""``python -m gateway demo`` as a subprocess, used the way its printout says: the printed
``mosquitto_sub`` line's broker and topic deliver every meter's state, the printed ``mbpoll``
line reads a value the simulated meter really has, the status page answers, and Ctrl-C
(SIGINT) ends everything with exit 0."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import fleet
from tests.support.broker import require_binary
from tests.support.mqtt import Subscriber
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
MQTT_LINE = re.compile(r"^  MQTT:\s+mosquitto_sub -h (\S+) -p (\d+) -t (\S+) -v")
MODBUS_LINE = re.compile(r"^  Modbus:\s+(mbpoll .*?)\s+# (.+) \(rate\)")
STATUS_LINE = re.compile(r"^  Status:\s+(http://\S+/)\s")


class Demo:
    """The demo process and every line it printed so far."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name="demo-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def match(self, pattern: re.Pattern[str]) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            return next((m for line in list(self.lines) if (m := pattern.match(line))), None)

        result = wait_until(found, timeout=30, what=f"a line like {pattern.pattern}")
        assert isinstance(result, re.Match)
        return result

    def finish(self) -> None:
        self._reader.join(10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    require_binary("mosquitto")
    require_binary("mbpoll")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--meters", "2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=(tmp_path / "demo.log").open("w"), text=True)
    d = Demo(proc)
    try:
        yield d
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        d.finish()


def test_demo_serves_mqtt_modbus_and_the_status_page_and_stops_on_ctrl_c(demo: Demo) -> None:
    host, port, topic = demo.match(MQTT_LINE).groups()
    base = shlex.split(topic)[0].removesuffix("/#")
    sub = Subscriber(host, int(port), shlex.split(topic)[0])
    try:
        for meter in ("sim1", "sim2"):
            state = sub.wait_for(f"{base}/{meter}/state", timeout=20).json()
            assert state["meter"] == meter
            assert {r["name"] for r in state["registers"].values()} >= {"Grid", "Solar+"}
    finally:
        sub.close()

    command, register = demo.match(MODBUS_LINE).groups()
    before = time.time()
    out = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=20,
                         check=True).stdout
    after = time.time()
    [value] = [float(v) for v in re.findall(r"^\[\d+\]:\s+(\S+)$", out, re.MULTILINE)]
    # the simulated meter SIM0001 is fleet(...)[0]: its value at the reading's second lies in
    # the range of its wave over the last few seconds
    sim = fleet(2)[0]
    seen = [sim.rate(register, t) for t in range(int(before) - 5, int(after) + 2)]
    slack = 1e-6 * max(abs(v) for v in seen) + 1e-3  # float32
    assert min(seen) - slack <= value <= max(seen) + slack

    url = demo.match(STATUS_LINE).group(1)
    with urllib.request.urlopen(url, timeout=5) as reply:
        page = reply.read().decode()
    assert "<h2>sim1</h2>" in page
    assert "<h2>sim2</h2>" in page

    wait_until(lambda: any(line.startswith("sim2 ") and " online " in line
                           for line in demo.lines), what="a summary line for sim2")
    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(20) == 0
    demo.finish()
    assert demo.lines[-1] == "demo stopped"
    if int(port) != 1883:  # the demo's own broker is gone with it
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=2).close()
