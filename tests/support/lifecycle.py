"""Test-side helpers (no tests here): the gateway as a subprocess with a configuration file
the test rewrites, JSON logs it reads, and a ``NOTIFY_SOCKET`` it listens on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.runtime import App
from tests.support.broker import Broker, free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "l1fe-Cycle-93kq"


@dataclass(frozen=True)
class MeterEntry:
    id: str
    url: str
    unit: int


def config_text(broker: Broker, prefix: str, state_dir: Path, meters: list[MeterEntry], *,
                modbus_port: int, http_port: int, poll_interval_s: float = 0.5) -> str:
    entries = "".join(
        f"""
  - id: {m.id}
    url: {m.url}
    username: owner
    password: ${{SIM_PASSWORD}}
    poll_interval_s: {poll_interval_s}
    modbus_unit_id: {m.unit}
""" for m in meters)
    return f"""
gateway: {{id: life, log_level: info, log_format: json, state_dir: "{state_dir}",
          shutdown_timeout_s: 8}}
meters:{entries}
mqtt:
  host: {broker.host}
  port: {broker.port}
  base_topic: {prefix}
  homeassistant: {{prefix: {prefix}-ha}}
modbus: {{host: 127.0.0.1, port: {modbus_port}}}
http: {{host: 127.0.0.1, port: {http_port}}}
"""


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    notify: socket.socket
    modbus_port: int
    http_port: int
    notes: list[str] = field(default_factory=list)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log events so far (``name``: only those)."""
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                out.append(event)
        return out

    def wait_event(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        found = wait_until(lambda: self.events(name), timeout=timeout, what=f"log event {name}")
        assert isinstance(found, list)
        return found[-1]

    def notifications(self) -> list[str]:
        """Every notify message received so far, oldest first (each a ``\\n``-joined text)."""
        while True:
            try:
                self.notes.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                return list(self.notes)

    def wait_notification(self, first_line: str, after: int = 0, timeout: float = 15.0) -> int:
        """The index of the first message from index ``after`` whose first line matches."""
        def found() -> int | None:  # index + 1, so that index 0 is truthy
            notes = self.notifications()
            return next((i + 1 for i in range(after, len(notes))
                         if notes[i].split("\n")[0] == first_line), None)

        index = wait_until(found, timeout=timeout, what=f"notification {first_line}")
        assert isinstance(index, int)
        return index - 1

    def rewrite(self, text: str) -> None:
        tmp = self.config.with_suffix(".new")
        tmp.write_text(text)
        tmp.replace(self.config)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


@contextmanager
def gateway_process(tmp_path: Path, text: Callable[[int, int], str],
                    env: dict[str, str] | None = None) -> Iterator[GatewayProcess]:
    """``python -m gateway run`` with the config ``text(modbus_port, http_port)``; stopped
    (SIGTERM, then SIGKILL) on leaving."""
    modbus_port, http_port = free_port(), free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(text(modbus_port, http_port))
    log = tmp_path / "gateway.log"
    address = f"@egauge-gateway-test-{os.getpid()}-{time.monotonic_ns()}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind("\0" + address[1:])
    notify.setblocking(False)
    full_env = {**os.environ, "SIM_PASSWORD": PASSWORD, "PYTHONPATH": str(ROOT),
                "NOTIFY_SOCKET": address, **(env or {})}
    full_env.pop("WATCHDOG_PID", None)
    if env is None or "WATCHDOG_USEC" not in env:
        full_env.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)],
                            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
                            stderr=log.open("wb"))
    gw = GatewayProcess(proc, config, log, notify, modbus_port, http_port)
    try:
        yield gw
    except BaseException:
        _print_tail(log)  # pytest shows it with the failure
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        notify.close()


def _print_tail(log: Path, lines: int = 60) -> None:
    try:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError as exc:
        tail = [f"(the gateway's log is unreadable: {exc!r})"]
    print(f"-- the last {len(tail)} lines of {log}", *tail, sep="\n")


def registers_read(app: App, meter: str) -> set[str]:
    """The register names of the meter's latest reading in the app's hub."""
    reading = app.hub.meter(meter).reading
    return {v.name for v in reading.registers} if reading is not None else set()
