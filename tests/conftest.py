"""Shared fixtures: free ports, a real Mosquitto broker, condition waits."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["tests.plugins.simulator"]

# Property tests judge behaviour, not speed: a busy 2-core CI box must not fail them on time.
settings.register_profile("gateway", deadline=None, print_blob=True)
settings.load_profile("gateway")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition!r}")
        time.sleep(interval)


async def async_wait_until(
    condition: Callable[[], object] | Callable[[], Awaitable[object]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "",
) -> object:
    """The asyncio form of :func:`wait_until`; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition!r}")
        await asyncio.sleep(interval)


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


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Mosquitto broker for the whole session (tests use their own topic prefixes)."""
    b = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker for one test, which may stop and restart it."""
    b = start_broker(tmp_path / "mosquitto")
    yield b
    b.stop()


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A base topic unique to this test."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    return f"t{time.monotonic_ns() % 10**9}-{name}"[:60]
