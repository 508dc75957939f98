"""Test-side helpers for history and fault scenarios (no tests here): a broker whose sessions
survive a restart, a subscriber with a persistent session, and the coverage check -- which
meter seconds the subscriber has, live or from history, and whether the history values are
the meter's own.

The subscriber's session is persistent (clean session off, QoS 1) on a broker with
persistence, so what the gateway publishes while the subscriber reconnects after a broker
restart waits for it: a second missing at the subscriber is then the gateway's fault.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import Config, EnergyConfig, HistoryConfig
from gateway.meter import type_code
from gateway.simulator import SimMeter
from tests.support.broker import Broker, start_broker
from tests.support.mqtt import expected_cumulative, gateway_config
from tests.support.waiting import async_wait_until, wait_until

_ids = itertools.count()
POLL_S = 0.25


def persistent_broker(directory: Path) -> Broker:
    """A broker that saves sessions every second and keeps every queued message."""
    store = directory / "store"
    store.mkdir(parents=True, exist_ok=True)
    return start_broker(directory, f"user root\npersistence true\npersistence_location {store}/\n"
                                   "autosave_interval 1\nmax_queued_messages 0\n")


def kill(broker: Broker) -> None:
    """SIGKILL the broker (no goodbye to anyone) and wait until it is gone."""
    assert broker.process is not None
    broker.process.kill()
    broker.process.wait(10)
    broker.process = None


class Recorder:
    """A subscriber on ``topic_filter`` with a persistent session that records every message
    (JSON decoded) with its topic."""

    def __init__(self, broker: Broker, topic_filter: str) -> None:
        self.messages: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.subscribed_at = 0.0
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"recorder-{next(_ids)}-{time.time_ns()}",
                                  clean_session=False)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, what=f"subscribed to {topic_filter}")

    def _on_subscribe(self, *_: object) -> None:
        self.subscribed_at = time.time()
        self._subscribed.set()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        import json

        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = bytes(msg.payload)
        with self._lock:
            self.messages.append((msg.topic, body))

    def on(self, topic: str) -> list[Any]:
        with self._lock:
            return [body for t, body in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def recorder(broker: Broker, topic_filter: str) -> Iterator[Recorder]:
    rec = Recorder(broker, topic_filter)
    try:
        yield rec
    finally:
        rec.close()


def session_saved(broker: Broker, since: float) -> bool:
    """Whether the broker wrote its persistence file after ``since`` (wall clock)."""
    files = list(broker.conf.parent.glob("store/*.db"))
    return any(f.stat().st_mtime > since for f in files)


def history_config(broker: Broker, prefix: str, state_dir: Path, url: str, *,
                   energy: bool = True, **history: Any) -> Config:
    """One meter ``main`` polled every POLL_S, offline after two failed polls, with history;
    ``energy=False`` turns its energy counters off (their requests to the meter's database
    would mix with the backfill's)."""
    config = gateway_config(broker, prefix, state_dir, [("main", url)], poll_interval_s=POLL_S,
                            offline_after=2)
    if not energy:
        config = replace(config, meters=tuple(replace(m, energy=EnergyConfig(enabled=False))
                                              for m in config.meters))
    return replace(config, history=HistoryConfig(**history))


def history_rows(rec: Recorder, prefix: str, meter_id: str = "main") -> list[dict[str, Any]]:
    return [row for message in rec.on(f"{prefix}/{meter_id}/history") for row in message["rows"]]


def published_seconds(rec: Recorder, prefix: str, meter_id: str = "main") -> set[int]:
    """Every meter second the subscriber has: live states and history rows."""
    live = {math.floor(state["ts"]) for state in rec.on(f"{prefix}/{meter_id}/state")}
    return live | {row["ts"] for row in history_rows(rec, prefix, meter_id)}


def stored(meter: SimMeter, t: int) -> bool:
    """Whether the meter's database holds a row for second ``t`` (any level)."""
    return any(s.oldest <= t <= s.head and t % s.interval_s == 0
               for s in meter.database().spans)


def missing(rec: Recorder, prefix: str, meter: SimMeter, start: int, end: int,
            meter_id: str = "main") -> list[int]:
    """The seconds in ``[start, end]`` the meter stores and the subscriber lacks."""
    have = published_seconds(rec, prefix, meter_id)
    return [t for t in range(start, end + 1) if t not in have and stored(meter, t)]


async def first_second(rec: Recorder, prefix: str) -> int:
    """The meter second of the first state the subscriber got."""
    await async_wait_until(lambda: rec.on(f"{prefix}/main/state"), what="a first state")
    return math.floor(rec.on(f"{prefix}/main/state")[0]["ts"])


async def wait_covered(rec: Recorder, prefix: str, meter: SimMeter, start: int,
                       end: int, timeout: float = 30.0, meter_id: str = "main") -> None:
    """Wait until nothing in ``[start, end]`` is missing; fail listing what still is."""
    try:
        await async_wait_until(lambda: not missing(rec, prefix, meter, start, end, meter_id),
                               timeout=timeout, interval=0.1, what="every stored second")
    except pytest.fail.Exception:
        gaps = missing(rec, prefix, meter, start, end, meter_id)
        pytest.fail(f"{meter_id}: {len(gaps)} stored seconds never published, e.g. "
                    f"{gaps[:10]}")


def check_history_values(rec: Recorder, prefix: str, meter: SimMeter) -> int:
    """Every history row against the simulator: the cumulative value at ``ts`` and the
    average rate over ``dt``, both derived from its deterministic register functions.
    Returns the number of rows checked."""
    rows = 0
    for message in rec.on(f"{prefix}/main/history"):
        registers = message["registers"]
        for row in message["rows"]:
            ts, dt = row["ts"], row["dt"]
            for slug, meta in registers.items():
                name = meta["name"]
                meaning = type_code(meta["type"])
                # published numbers carry the digits of the quantum: within half of it
                assert row["cumulative"][slug] == pytest.approx(
                    expected_cumulative(meter, name, ts), rel=0,
                    abs=meaning.cumulative_factor / 2 + 1e-12), (name, ts)
                if dt is None or meter.register(name).type_code == "d":
                    continue
                quantum = meaning.quantum
                average = (meter.raw(name, ts) - meter.raw(name, ts - dt)) * quantum / dt
                assert row["rate"][slug] == pytest.approx(
                    average, rel=0, abs=10 ** -(meaning.rate_digits or 0) / 2 + 1e-12), \
                    (name, ts)
            rows += 1
    return rows
