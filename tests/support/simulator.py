"""Fixtures around the project's meter simulator.

``sim_meter``: a fresh SimMeter (serial SIM0001, user ``owner``, password :data:`SIM_PASSWORD`).
``sim_server``: ``sim_meter`` served on a free loopback port (async fixture).
``sim_client``: an httpx client for ``sim_meter``'s ``/api``, logged in.
``threaded_simulator``: a factory ``threaded_simulator(meters, **kwargs)`` returning a started
:class:`ThreadedSimServer` (its own loop in a thread), stopped after the test.

Helpers: :class:`ManualClock` (an injectable clock), :func:`digest_login_body` (the login
body computed from the spec), :func:`sim_login`, :func:`served_client`,
:func:`change_registers` (through the control endpoint).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from gateway.simulator import SimMeter, SimServer, ThreadedSimServer

SIM_SERIAL = "SIM0001"
SIM_USERNAME = "owner"
SIM_PASSWORD = "s3cret"


@pytest.fixture
def sim_meter() -> SimMeter:
    return SimMeter(serial=SIM_SERIAL, username=SIM_USERNAME, password=SIM_PASSWORD)


@pytest.fixture
async def sim_server(sim_meter: SimMeter) -> AsyncIterator[SimServer]:
    async with SimServer([sim_meter], host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def threaded_simulator() -> Iterator[Callable[..., ThreadedSimServer]]:
    started: list[ThreadedSimServer] = []

    def start(meters: Sequence[SimMeter], **kwargs: Any) -> ThreadedSimServer:
        sim = ThreadedSimServer(meters, **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in reversed(started):
        sim.stop()


class ManualClock:
    """An injectable clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.25) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def digest_login_body(challenge: dict[str, str], username: str, password: str,
                      cnnc: str = "0123456789abcdef") -> dict[str, str]:
    """The login body for a 401 challenge, computed from the WebAPI spec (egauge-webapi §1)."""
    ha1 = hashlib.md5(f"{username}:{challenge['rlm']}:{password}".encode()).hexdigest()
    digest = hashlib.md5(f"{ha1}:{challenge['nnc']}:{cnnc}".encode()).hexdigest()
    return {"rlm": challenge["rlm"], "usr": username, "nnc": challenge["nnc"], "cnnc": cnnc,
            "hash": digest}


async def sim_login(client: httpx.AsyncClient, username: str = SIM_USERNAME,
                    password: str = SIM_PASSWORD) -> str:
    """Log ``client`` (base URL ending in /api) in; sets and returns the bearer token."""
    client.headers.pop("Authorization", None)
    challenge = (await client.get("/auth/unauthorized")).json()
    reply = await client.post("/auth/login",
                              json=digest_login_body(challenge, username, password))
    token: str = reply.json()["jwt"]
    client.headers["Authorization"] = f"Bearer {token}"
    return token


@asynccontextmanager
async def served_client(meter: SimMeter, username: str = SIM_USERNAME,
                        password: str = SIM_PASSWORD) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``meter`` on a free port; yield an httpx client for its /api, logged in."""
    async with SimServer([meter]) as server, httpx.AsyncClient(
            base_url=server.url_for(meter) + "/api") as client:
        await sim_login(client, username, password)
        yield client


@pytest.fixture
async def sim_client(sim_server: SimServer, sim_meter: SimMeter
                     ) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for ``sim_meter``'s /api, already logged in."""
    async with httpx.AsyncClient(base_url=sim_server.url_for(sim_meter) + "/api") as client:
        await sim_login(client)
        yield client


async def change_registers(meter_url: str, **spec: Any) -> None:
    """Change a simulated meter's register set through its ``/__sim__/`` control endpoint
    (``add=[{name, type, base, amp}]``, ``remove=[...]``, ``rename={old: new}``, ...)."""
    async with httpx.AsyncClient(base_url=meter_url) as ctl:
        reply = await ctl.post("/__sim__/faults", json={"registers": spec})
    assert reply.status_code == 200, reply.text
