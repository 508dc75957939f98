"""Fleet mode and the ``simulate`` sub-command."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.simulator import SimServer, fleet
from gateway.simulator.connection import Endpoint
from tests.support.broker import free_port
from tests.support.simulator import sim_login
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


async def serials(urls: list[str], password: str) -> list[str]:
    found = []
    for url in urls:
        async with httpx.AsyncClient(base_url=url + "/api") as client:
            await sim_login(client, "owner", password)
            found.append((await client.get("/sys/sn")).json()["result"])
    return found


async def test_fleet_one_port_each() -> None:
    meters = fleet(3, password="pw")
    async with SimServer(meters) as server:
        ports = {urlsplit(u).port for u in server.urls}
        assert len(ports) == 3
        assert await serials(server.urls, "pw") == ["SIM0001", "SIM0002", "SIM0003"]
        # the meters do not read alike
        t = meters[0].latest()
        assert meters[0].rate("Grid", t) != meters[1].rate("Grid", t)


async def test_fleet_one_address_each_on_a_common_port() -> None:
    meters = fleet(3, password="pw")
    async with SimServer(meters, host="127.0.0.1", fleet_addresses=True) as server:
        parts = [urlsplit(u) for u in server.urls]
        assert [p.hostname for p in parts] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        assert len({p.port for p in parts}) == 1
        assert await serials(server.urls, "pw") == ["SIM0001", "SIM0002", "SIM0003"]
        meters[1].go_down(30)
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(server.urls[1] + "/api/auth/unauthorized")
            assert (await client.get(server.urls[2] + "/api/auth/unauthorized")
                    ).status_code == 401  # its neighbours stay up


async def test_fleet_addresses_try_another_port_when_one_address_has_it_taken() -> None:
    class Crowded(SimServer):
        """The second address's port is taken at the first attempt (another process)."""

        taken = 0

        async def _listen(self, ep: Endpoint) -> None:
            if ep.host == "127.0.0.2" and not self.taken:
                self.taken = ep.port
                raise OSError(errno.EADDRINUSE, "address already in use")
            await super()._listen(ep)

    meters = fleet(3, password="pw")
    async with Crowded(meters, host="127.0.0.1", fleet_addresses=True) as server:
        ports = {urlsplit(u).port for u in server.urls}
        assert len(ports) == 1
        assert server.taken  # the first attempt met the taken port, the second served
        assert await serials(server.urls, "pw") == ["SIM0001", "SIM0002", "SIM0003"]


def test_simulate_command_serves_until_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "EGAUGE_SIM_CONTROL": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "--port", str(port), "--meters", "2",
         "--fleet-addresses", "--password", "pw", "--token-lifetime", "120",
         "--reactive-code", "var", "--day-length", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: len(lines) >= 3, timeout=20, what="the simulator's URL list")
        assert "'owner'" in lines[0]
        assert "'pw'" in lines[0]
        assert lines[1].split() == ["SIM0001", f"http://127.0.0.1:{port}"]
        assert lines[2].split() == ["SIM0002", f"http://127.0.0.2:{port}"]
        with httpx.Client(base_url=f"http://127.0.0.2:{port}") as client:
            state = client.get("/__sim__/state").json()
            assert state["serial"] == "SIM0002"
            types = {r["name"]: r["type"] for r in state["registers"]}
            assert types["Reactive"] == "var"
            now = int(time.time())
            grid = client.get("/__sim__/raw", params={"name": "Grid", "from": str(now - 600),
                                                      "to": str(now)}).json()["changes"]
            assert min(grid) < 0 < max(grid)  # a 600-second day: import and export
            challenge = client.get("/api/auth/unauthorized").json()
            assert challenge["error"] == "Authentication required."
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        reader.join(timeout=5)
    assert code == 0
    assert "sim_stopping" in (proc.stderr.read() if proc.stderr else "")


def test_simulate_command_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "simulate", "--port", str(port)],
            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 3
    assert "sim_start_failed" in result.stderr
