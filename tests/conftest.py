"""Shared fixtures: a real Mosquitto broker, topic prefixes, the simulator (tests.support)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.broker import Broker, start_broker

pytest_plugins = ["tests.support.simulator"]

# Property tests judge behaviour, not speed: a busy 2-core CI box must not fail them on time.
settings.register_profile("gateway", deadline=None, print_blob=True)
settings.load_profile("gateway")


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
