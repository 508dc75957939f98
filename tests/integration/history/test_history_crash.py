"""A crash in the middle of a long backfill: ``python -m gateway run`` killed with SIGKILL
while it fills a gap of an hour, then started again. The restart resumes from the watermark
saved after the last request whose rows the broker took, so the subscriber (persistent
session, QoS 1) ends up with every stored second, and no more than one request's rows (plus
the live seconds of the last second) twice."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from gateway.history import STATE_FILE
from gateway.simulator import SimMeter, ThreadedSimServer
from gateway.support import write_json
from tests.support.history import history_rows, missing, persistent_broker, recorder
from tests.support.lifecycle import PASSWORD, MeterEntry, config_text, gateway_process
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

GAP_S = 3600
MAX_ROWS = 100
LIVE_SLACK = 3  # live seconds confirmed after the last periodic save (about 1 s of them)


def test_a_crash_mid_backfill_repeats_at_most_one_request_of_rows(
        tmp_path: Path, topic_prefix: str) -> None:
    broker = persistent_broker(tmp_path / "mq")
    p = topic_prefix
    meter = SimMeter("SIM0606", password=PASSWORD)
    state = tmp_path / "state"
    try:
        with ThreadedSimServer([meter]) as sim, recorder(broker, f"{p}/main/#") as rec:
            start = math.floor(meter.latest()) - GAP_S  # the last run ended an hour ago
            write_json(state / STATE_FILE, {"version": 1,
                                            "meters": {"main": {"published_until": start}}})

            def text(modbus_port: int, http_port: int) -> str:
                return config_text(broker, p, state, [MeterEntry("main", sim.url_for(meter), 1)],
                                   modbus_port=modbus_port, http_port=http_port) \
                    + f"history: {{max_rows: {MAX_ROWS}}}\n"

            first, second = tmp_path / "first", tmp_path / "second"
            first.mkdir()
            second.mkdir()
            with gateway_process(first, text) as gw:
                wait_until(lambda: len(history_rows(rec, p)) >= 10 * MAX_ROWS, timeout=60,
                           what="the backfill well under way")
                gw.proc.kill()  # SIGKILL: no final save
                gw.proc.wait(10)
            before = len(history_rows(rec, p))
            resumed = json.loads((state / STATE_FILE).read_text())["meters"]["main"]
            assert start < resumed["published_until"] < start + GAP_S  # mid-backfill
            with gateway_process(second, text) as gw:
                end = math.floor(meter.latest())
                wait_until(lambda: not missing(rec, p, meter, start + 1, end), timeout=120,
                           interval=0.2, what="every stored second published")
                assert gw.stop() == 0
    finally:
        broker.stop()
    rows = history_rows(rec, p)
    assert min(r["ts"] for r in rows[before:]) == resumed["published_until"] + 1
    counts = Counter(r["ts"] for r in rows)
    repeated_history = sum(n - 1 for n in counts.values())
    live = {math.floor(s["ts"]) for s in rec.on(f"{p}/main/state")}
    repeated_live = sum(1 for t in counts if t in live)
    assert repeated_history <= MAX_ROWS
    assert repeated_live <= LIVE_SLACK
    assert before >= 10 * MAX_ROWS  # the crash came after many requests, not before them
