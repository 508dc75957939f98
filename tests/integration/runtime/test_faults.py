"""Fault injection with real parts: the gateway in this process (or as a process), the
simulator over real HTTP, a real Mosquitto (killed with SIGKILL where it says so) and a
subscriber with a persistent session. Each scenario asserts recovery -- the meter back
online, the broker reconnected -- and that afterwards the subscriber holds every second the
meter stored during the scenario, live or from history, with the meter's own values."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.history import STATE_FILE
from gateway.runtime import App
from gateway.simulator import SimMeter, SimServer, ThreadedSimServer
from gateway.support import write_json
from tests.support.broker import Broker
from tests.support.history import (
    Recorder,
    check_history_values,
    first_second,
    history_config,
    kill,
    missing,
    persistent_broker,
    recorder,
    session_saved,
    wait_covered,
)
from tests.support.mqtt import running_app
from tests.support.waiting import async_wait_until, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
Fault = Callable[[SimMeter, App], Awaitable[None]]


async def offline_then_online(app: App) -> None:
    stats = app.pollers["main"].stats
    await async_wait_until(lambda: stats.online is False, what="the meter shown offline")
    await async_wait_until(lambda: stats.online, timeout=20, what="the meter back online")


async def refused(meter: SimMeter, app: App) -> None:
    meter.go_down(2.0)
    await offline_then_online(app)


async def reboot(meter: SimMeter, app: App) -> None:
    logins = meter.logins
    meter.reboot()  # tokens revoked, the 1-second rows so far lost, 2 s off the network
    await offline_then_online(app)
    assert meter.logins == logins + 1


async def latency(meter: SimMeter, app: App) -> None:
    meter.faults.latency_s = 1.0  # the gateway's timeout is 0.2 s
    await async_wait_until(lambda: app.pollers["main"].stats.online is False,
                           what="the meter shown offline")
    meter.faults.latency_s = 0.0
    await offline_then_online(app)


async def http_500(meter: SimMeter, app: App) -> None:
    meter.faults.http_500 = 4
    await offline_then_online(app)
    assert meter.faults.http_500 == 0


async def broken_json(meter: SimMeter, app: App) -> None:
    meter.faults.broken_json = 4
    await offline_then_online(app)
    assert meter.faults.broken_json == 0


async def token_revoked(meter: SimMeter, app: App) -> None:
    logins = meter.logins
    meter.revoke_tokens()
    await async_wait_until(lambda: meter.logins == logins + 1, what="one new login")
    assert app.pollers["main"].stats.online


async def nonce_expired(meter: SimMeter, app: App) -> None:
    logins, refused = meter.logins, meter.authority.login_failures
    meter.nonce_lifetime_s = 0.0  # every nonce is stale by the time the login arrives
    meter.revoke_tokens()
    await async_wait_until(lambda: meter.authority.login_failures > refused
                           and app.pollers["main"].stats.consecutive_failures > 0,
                           what="a login refused for its stale nonce")
    meter.nonce_lifetime_s = 60.0
    await async_wait_until(lambda: meter.logins == logins + 1, timeout=20,
                           what="a login with a fresh nonce")
    await async_wait_until(lambda: app.pollers["main"].stats.online, what="the meter online")


METER_FAULTS: dict[str, Fault] = {
    "connection_refused": refused, "reboot": reboot, "latency_beyond_timeout": latency,
    "http_500_burst": http_500, "broken_json": broken_json, "token_revoked": token_revoked,
    "nonce_expired": nonce_expired,
}


@pytest.mark.parametrize("fault", list(METER_FAULTS))
async def test_meter_fault_recovers_without_losing_a_stored_second(
        fault: str, tmp_path: Path, topic_prefix: str) -> None:
    broker = persistent_broker(tmp_path / "mq")
    p = topic_prefix
    meter = SimMeter("SIM0601", reboot_downtime_s=2.0)
    try:
        async with SimServer([meter]) as server:
            config = history_config(broker, p, tmp_path / "state", server.url_for(meter))
            with recorder(broker, f"{p}/#") as rec:
                async with running_app(config) as app:
                    start = await first_second(rec, p)
                    await METER_FAULTS[fault](meter, app)
                    end = meter.latest() + 1
                    await wait_covered(rec, p, meter, start, end)
                    assert app.pollers["main"].stats.online
                # the clean stop: the broker took the offline, the subscriber gets it soon
                await async_wait_until(
                    lambda: rec.on(f"{p}/main/availability")[-1] == b"offline",
                    what="the meter offline after the clean stop")
    finally:
        broker.stop()
    check_history_values(rec, p, meter)


async def reconnected(app: App, rec: Recorder, broker: Broker, connects: int) -> None:
    """Both the gateway and the subscriber are back, and the broker saved the session."""
    assert app.mqtt is not None
    stats = app.mqtt.connection.stats
    await async_wait_until(lambda: stats.connected and stats.connects > connects,
                           timeout=20, what="the gateway reconnected")
    await async_wait_until(rec.client.is_connected, timeout=20, what="the subscriber back")
    since = time.time()
    await async_wait_until(lambda: session_saved(broker, since), what="the session saved")


async def test_broker_killed_twice_in_a_row(tmp_path: Path, topic_prefix: str) -> None:
    """A queue of three messages: most states of each outage are dropped, history fills in."""
    broker = persistent_broker(tmp_path / "mq")
    p = topic_prefix
    meter = SimMeter("SIM0602")
    try:
        async with SimServer([meter]) as server:
            config = history_config(broker, p, tmp_path / "state", server.url_for(meter))
            config = replace(config, mqtt=replace(config.mqtt, queue_limit=3))
            with recorder(broker, f"{p}/#") as rec:
                async with running_app(config) as app:
                    assert app.mqtt is not None
                    start = await first_second(rec, p)
                    await async_wait_until(lambda: session_saved(broker, rec.subscribed_at),
                                           what="the subscriber's session saved")
                    for _ in range(2):
                        connects = app.mqtt.connection.stats.connects
                        kill(broker)
                        down_since = meter.latest()
                        await async_wait_until(lambda d=down_since: meter.latest() >= d + 2,
                                               what="two seconds without a broker")
                        broker.start()
                        await reconnected(app, rec, broker, connects)
                    end = meter.latest() + 1
                    await wait_covered(rec, p, meter, start, end)
                    assert app.mqtt.connection.stats.dropped > 0
    finally:
        broker.stop()
    assert check_history_values(rec, p, meter) >= 2


async def test_broker_killed_while_a_backfill_runs(tmp_path: Path, topic_prefix: str) -> None:
    broker = persistent_broker(tmp_path / "mq")
    p = topic_prefix
    meter = SimMeter("SIM0603")
    state = tmp_path / "state"
    # the last run stopped five minutes ago: a long backfill, one row per request
    start = meter.latest() - 300
    write_json(state / STATE_FILE, {"version": 1, "meters": {"main": {"published_until": start}}})
    try:
        async with SimServer([meter]) as server:
            config = history_config(broker, p, state, server.url_for(meter), max_rows=2)
            with recorder(broker, f"{p}/#") as rec:
                await async_wait_until(lambda: session_saved(broker, rec.subscribed_at),
                                       what="the subscriber's session saved")
                async with running_app(config) as app:
                    assert app.mqtt is not None
                    assert app.history is not None
                    await async_wait_until(lambda: rec.on(f"{p}/main/history"),
                                           what="the backfill under way")
                    connects = app.mqtt.connection.stats.connects
                    kill(broker)
                    assert app.history.status()["main"]["gap"] is not None  # not done yet
                    broker.start()
                    await reconnected(app, rec, broker, connects)
                    end = meter.latest() + 1
                    await wait_covered(rec, p, meter, start + 1, end, timeout=60)
    finally:
        broker.stop()
    assert check_history_values(rec, p, meter) >= 250


def gateway_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def test_gateway_killed_and_restarted(tmp_path: Path, topic_prefix: str) -> None:
    """SIGKILL: no goodbye, no final save; the restart resumes from the last saved
    watermark (at most a second old), so nothing is lost and little is sent twice."""
    broker = persistent_broker(tmp_path / "mq")
    p = topic_prefix
    meter = SimMeter("SIM0604", password="pw-604")
    config = tmp_path / "gateway.yaml"
    state = tmp_path / "state"
    log = tmp_path / "gateway.log"
    try:
        with ThreadedSimServer([meter]) as sim, recorder(broker, f"{p}/#") as rec:
            config.write_text(f"""
gateway: {{id: crash, log_format: json, state_dir: "{state}", shutdown_timeout_s: 5}}
meters:
  - {{id: main, url: "{sim.url_for(meter)}", username: owner, password_file: pw,
     poll_interval_s: 0.25, offline_after: 2}}
mqtt: {{host: {broker.host}, port: {broker.port}, base_topic: {p},
        homeassistant: {{enabled: false}}}}
modbus: {{enabled: false}}
http: {{enabled: false}}
""")
            (tmp_path / "pw").write_text("pw-604\n")
            proc = gateway_process(config, log)
            try:
                wait_until(lambda: rec.on(f"{p}/main/state"), timeout=30, what="a first state")
                start = math.floor(rec.on(f"{p}/main/state")[0]["ts"])
                wait_until(lambda: (state / STATE_FILE).exists(), what="a saved watermark")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                killed_at = meter.latest()
                wait_until(lambda: meter.latest() >= killed_at + 3, what="three seconds later")
                proc = gateway_process(config, log)
                wait_until(lambda: rec.on(f"{p}/main/history"), timeout=30,
                           what="history after the restart")
                end = meter.latest() + 1
                wait_until(lambda: not missing(rec, p, meter, start, end), timeout=30,
                           what="every stored second published")
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
    finally:
        broker.stop()
    assert proc.returncode == 0, log.read_text()
    assert check_history_values(rec, p, meter) >= 2
