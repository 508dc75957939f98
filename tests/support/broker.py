"""Real parts the tests start: free loopback ports, binaries that must be installed, and
Mosquitto brokers."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.support.waiting import wait_until

PORT_STRIDE: Final = 4  # ports a call keeps clear: an instance of a shard listens on port + index
_PORTS_FROM: Final = 10000
_handed_out = itertools.count()  # how many ports this process handed out


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now, and that nothing else is about to take.

    A port from ``bind(port 0)`` lies in the kernel's ephemeral range, from which every
    ``connect()`` of every process also takes its local port: between this call and the
    server's bind, a connection elsewhere can take it (a gateway that then failed to start
    was seen once in a full run). These ports lie below that range, in a block of each
    xdist worker's own; one process hands out every :data:`PORT_STRIDE`-th port of its block
    in turn, and passes over a port still bound (or in TIME_WAIT) from earlier."""
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    block = (_ephemeral_low() - _PORTS_FROM) // workers // PORT_STRIDE * PORT_STRIDE
    if block < 64 * PORT_STRIDE:  # an ephemeral range that starts low: the kernel's choice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            return int(s.getsockname()[1])
    start = _PORTS_FROM + (int(worker) % workers if worker.isdigit() else 0) * block
    for _ in range(block // PORT_STRIDE):
        port = start + next(_handed_out) * PORT_STRIDE % block
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {start}..{start + block - 1} on {host}")


def require_binary(name: str) -> str:
    """The path of ``name``; a missing binary fails the run (never skips it)."""
    path = shutil.which(name)
    if path is None and Path(f"/usr/sbin/{name}").exists():
        path = f"/usr/sbin/{name}"  # Debian installs mosquitto there, outside a user's PATH
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install mosquitto mosquitto-clients mbpoll)")
    return path


@dataclass
class Broker:
    """A Mosquitto broker this test session started."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None
    conf: Path
    log: Path

    def start(self) -> None:
        self.process = subprocess.Popen(
            [require_binary("mosquitto"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )
        wait_until(self._accepts, timeout=10, what=f"mosquitto on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False


def start_broker(directory: Path, extra_conf: str = "", port: int | None = None) -> Broker:
    """Start ``mosquitto`` on a free loopback port with a config written into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        + ("allow_anonymous true\n" if "allow_anonymous" not in extra_conf else "")
        + "persistence false\n"
        + extra_conf
    )
    broker = Broker("127.0.0.1", port, None, conf, directory / "mosquitto.log")
    broker.start()
    return broker
