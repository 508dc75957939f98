"""``gateway.workers: 2`` as a real process against the simulator: every meter polled by exactly
one worker, one Modbus endpoint and one HTTP endpoint for the units and metrics of both, the
bridge topics of one gateway, a killed worker restarted with its gap backfilled, SIGTERM
stopping every worker with exit 0."""

from __future__ import annotations

import json
import math
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymodbus.client import AsyncModbusTcpClient

from gateway.simulator import SimMeter, ThreadedSimServer, fleet
from tests.support.broker import Broker
from tests.support.history import published_seconds, recorder, wait_covered
from tests.support.lifecycle import PASSWORD, GatewayProcess, gateway_process
from tests.support.waiting import async_wait_until, wait_until

METERS = 6
POLL_S = 0.5


def config_text(broker: Broker, prefix: str, state_dir: Path, urls: list[str]
                ) -> Callable[[int, int], str]:
    """The configuration of ``urls`` as meters m0, m1, ... (unit ids 1, 2, ...)."""
    entries = "".join(f"""
  - id: m{i}
    url: {url}
    username: owner
    password: ${{SIM_PASSWORD}}
    poll_interval_s: {POLL_S}
    modbus_unit_id: {i + 1}
""" for i, url in enumerate(urls))

    def text(modbus_port: int, http_port: int) -> str:
        return f"""
gateway: {{id: duo, workers: 2, log_level: info, log_format: json, state_dir: "{state_dir}",
          shutdown_timeout_s: 5}}
meters:{entries}
mqtt:
  host: {broker.host}
  port: {broker.port}
  base_topic: {prefix}
  homeassistant: {{prefix: {prefix}-ha}}
modbus: {{host: 127.0.0.1, port: {modbus_port}}}
http: {{host: 127.0.0.1, port: {http_port}}}
"""
    return text


@pytest.fixture
def meters() -> list[SimMeter]:
    return fleet(METERS + 1, password=PASSWORD)  # the last one only after a reload


@pytest.fixture
def sim(threaded_simulator: Callable[..., ThreadedSimServer], meters: list[SimMeter]
        ) -> ThreadedSimServer:
    return threaded_simulator(meters)


@pytest.fixture
def duo(tmp_path: Path, broker: Broker, topic_prefix: str, sim: ThreadedSimServer
        ) -> Iterator[GatewayProcess]:
    text = config_text(broker, topic_prefix, tmp_path / "state", sim.urls[:METERS])
    with gateway_process(tmp_path, text) as gw:
        gw.wait_notification("READY=1", timeout=30)
        yield gw


def get(gw: GatewayProcess, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.http_port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def polls_by_worker(gw: GatewayProcess) -> dict[str, dict[str, float]]:
    """meter -> {worker: successful polls}, from the one /metrics."""
    status, body = get(gw, "/metrics")
    assert status == 200
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "egauge_meter_polls":
            for s in family.samples:
                found.setdefault(s.labels["meter"], {})[s.labels["worker"]] = s.value
    return found


def workers_started(gw: GatewayProcess) -> list[dict[str, Any]]:
    return gw.events("worker_started")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_workers_share_the_fleet_behind_one_modbus_and_one_http_endpoint(
        duo: GatewayProcess, meters: list[SimMeter], broker: Broker, topic_prefix: str) -> None:
    sims = meters
    meters_ids = [f"m{i}" for i in range(METERS)]
    started = workers_started(duo)
    assert sorted(e["worker"] for e in started) == [0, 1]
    assert len({e["pid"] for e in started}) == 2
    assert duo.proc.pid not in {
        e["pid"] for e in started}

    # every meter is polled, by exactly one worker, and logged in to once
    def polled_once() -> dict[str, dict[str, float]] | None:
        found = polls_by_worker(duo)
        return found if sorted(found) == meters_ids and all(
            v > 0 for w in found.values() for v in w.values()) else None

    split = wait_until(polled_once, timeout=20, what="every meter polled")
    assert isinstance(split, dict)
    assert all(len(workers) == 1 for workers in split.values()), split
    owners = {m: next(iter(w)) for m, w in split.items()}
    assert set(owners.values()) == {"0", "1"}, f"a worker without meters: {owners}"
    assert [m.logins for m in sims[:METERS]] == [1] * METERS

    # one readiness for both, and one status page linking each worker's own
    status, body = get(duo, "/readyz")
    ready = json.loads(body)
    assert (status, ready["ready"], ready["workers"]) == (200, True, {"0": True, "1": True})
    assert sorted(ready["fresh_meters"]) == meters_ids
    status, page = get(duo, "/")
    assert status == 200
    assert b'href="/workers/0/"' in page
    assert b'href="/workers/1/"' in page
    for worker in ("0", "1"):
        status, own = get(duo, f"/workers/{worker}/")
        mine = [m for m, w in owners.items() if w == worker]
        assert status == 200
        assert all(f"<h2>{m}</h2>".encode() in own for m in mine)

    # Modbus: the units of both workers through the one configured endpoint
    async with AsyncModbusTcpClient("127.0.0.1", port=duo.modbus_port) as client:
        for i, meter in enumerate(meters_ids):
            rr = await client.read_input_registers(0, count=8, device_id=i + 1)
            assert not rr.isError(), (meter, owners[meter], rr)
            online, ts = rr.registers[0], rr.registers[2] << 16 | rr.registers[3]
            assert online == 1, meter
            assert abs(ts - time.time()) < 60, (meter, ts)

    # MQTT: one gateway's bridge topics, as a single process has them
    with recorder(broker, f"{topic_prefix}/bridge/#") as rec:
        await async_wait_until(lambda: rec.on(f"{topic_prefix}/bridge/info"), what="info")
        info = rec.on(f"{topic_prefix}/bridge/info")[-1]
        assert rec.on(f"{topic_prefix}/bridge/state")[-1] == b"online"
        await async_wait_until(lambda: len({t for t, _ in rec.messages
                                            if t.endswith("-w0/state") or t.endswith("-w1/state")
                                            }) == 2, what="each worker's own session state")
    assert info["id"] == "duo"
    assert sorted(info["meters"]) == meters_ids
    assert {str(w["worker"]): sorted(w["meters"]) for w in info["workers"]} == {
        w: sorted(m for m, o in owners.items() if o == w) for w in ("0", "1")}


async def test_a_killed_worker_comes_back_with_its_gap_filled_and_sigterm_stops_all(
        duo: GatewayProcess, meters: list[SimMeter], broker: Broker, topic_prefix: str,
        tmp_path: Path) -> None:
    with recorder(broker, f"{topic_prefix}/+/+") as rec:
        split = wait_until(lambda: (found := polls_by_worker(duo)) and len(found) == METERS
                           and found, timeout=20, what="every meter polled")
        assert isinstance(split, dict)
        victim = next(e for e in workers_started(duo) if e["worker"] == 1)
        lost = sorted(m for m, w in split.items() if "1" in w)
        assert lost, "worker 1 has meters"
        await async_wait_until(lambda: all(published_seconds(rec, topic_prefix, m)
                                           for m in lost), what="states of worker 1's meters")
        # worker 1 keeps its history watermarks in its own file: wait until it wrote them
        marks = tmp_path / "state" / "worker-1" / "history.json"
        await async_wait_until(lambda: marks.exists() and set(lost) <= set(
            json.loads(marks.read_text())["meters"]), what="worker 1's watermarks on disk")
        before = math.floor(time.time())
        survivor = [m for m, w in split.items() if "0" in w]
        seen = {m: len(rec.on(f"{topic_prefix}/{m}/availability")) for m in [*survivor, *lost]}

        os.kill(victim["pid"], signal.SIGKILL)
        exited = duo.wait_event("worker_exited")
        assert (exited["worker"], exited["pid"], exited["exit"]) == (1, victim["pid"],
                                                                     "signal SIGKILL")
        # its meters show offline while it is gone, until the new one polls them
        await async_wait_until(lambda: all(b"offline" in rec.on(f"{topic_prefix}/{m}/"
                                                                "availability")[seen[m]:]
                                           for m in lost), what="its meters offline")
        restarted = wait_until(lambda: [e for e in workers_started(duo)
                                        if e["worker"] == 1 and e["pid"] != victim["pid"]],
                               timeout=20, what="worker 1 started again")
        assert isinstance(restarted, list)
        assert not alive(victim["pid"])
        await async_wait_until(lambda: all(rec.on(f"{topic_prefix}/{m}/availability")[-1]
                                           == b"online" for m in lost), timeout=20,
                               what="its meters online again")
        after = math.floor(time.time()) + 1
        # the seconds it was away are read back from the meters' own history
        for meter_id in lost:
            meter = meters[int(meter_id[1:])]
            await wait_covered(rec, topic_prefix, meter, before, after, meter_id=meter_id)
        assert any(rec.on(f"{topic_prefix}/{m}/history") for m in lost), "backfilled, not live"
        assert all(b"offline" not in rec.on(f"{topic_prefix}/{m}/availability")[seen[m]:]
                   for m in survivor), "the other worker's meters stayed online"

    _status, body = get(duo, "/metrics")
    restarts = {s.labels["worker"]: s.value
                for f in text_string_to_metric_families(body.decode())
                if f.name == "egauge_worker_restarts" for s in f.samples}
    assert restarts == {"0": 0.0, "1": 1.0}
    # name[] picks families from the workers and from the supervisor alike
    _status, body = get(duo, "/metrics?name[]=egauge_worker_restarts"
                             "&name%5B%5D=egauge_meter_polls_total")
    picked = {f.name: {s.labels["worker"] for s in f.samples}
              for f in text_string_to_metric_families(body.decode())}
    assert picked == {"egauge_worker_restarts": {"0", "1"}, "egauge_meter_polls": {"0", "1"}}

    pids = [e["pid"] for e in workers_started(duo)]
    duo.proc.send_signal(signal.SIGTERM)
    assert duo.proc.wait(20) == 0, duo.log.read_text()[-3000:]
    assert not any(alive(p) for p in pids)
    stopped = duo.events("worker_stopped")
    assert sorted((e["worker"], e["exit"]) for e in stopped) == [(0, "exit code 0"),
                                                                 (1, "exit code 0")]
    assert duo.notifications()[-1].startswith("STOPPING=1")
    assert PASSWORD not in duo.log.read_text()



async def test_sighup_reaches_every_worker_and_the_routing(
        duo: GatewayProcess, meters: list[SimMeter], sim: ThreadedSimServer, broker: Broker,
        topic_prefix: str, tmp_path: Path) -> None:
    """A meter added to the file and a SIGHUP: the worker that owns it polls it, the one
    Modbus endpoint serves its unit, ``bridge/info`` lists it, READY follows RELOADING."""
    added = f"m{METERS}"
    wait_until(lambda: len(polls_by_worker(duo)) == METERS, timeout=20, what="every meter")
    text = config_text(broker, topic_prefix, tmp_path / "state", sim.urls)
    duo.rewrite(text(duo.modbus_port, duo.http_port))
    seen = len(duo.notifications())
    with recorder(broker, f"{topic_prefix}/{added}/state") as rec:
        duo.proc.send_signal(signal.SIGHUP)
        reloading = duo.wait_notification("RELOADING=1", after=seen)
        duo.wait_notification("READY=1", after=reloading, timeout=30)
        await async_wait_until(lambda: rec.on(f"{topic_prefix}/{added}/state"), timeout=20,
                               what="the added meter's state")
    owners = polls_by_worker(duo)[added]
    assert list(owners) == [str(shard_owner(added))]
    assert meters[METERS].logins == 1
    async with AsyncModbusTcpClient("127.0.0.1", port=duo.modbus_port) as client:
        rr = await async_wait_until(lambda: modbus_status(client, METERS + 1), timeout=10,
                                    what="the added unit through the one endpoint")
    assert rr == 1
    with recorder(broker, f"{topic_prefix}/bridge/info") as rec:
        await async_wait_until(lambda: rec.on(f"{topic_prefix}/bridge/info"), what="info")
        info = rec.on(f"{topic_prefix}/bridge/info")[-1]
    assert added in info["meters"]
    assert duo.events("config_reloaded")


async def modbus_status(client: AsyncModbusTcpClient, unit: int) -> int | None:
    rr = await client.read_input_registers(0, count=8, device_id=unit)
    return None if rr.isError() else int(rr.registers[0])


def shard_owner(meter: str) -> int:
    from gateway.config import shard

    return shard.worker_owner(meter, 2)
