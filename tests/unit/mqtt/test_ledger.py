"""The retained-topic ledger: what it remembers across restarts, and when it writes."""

from __future__ import annotations

import json
from pathlib import Path

from structlog.testing import capture_logs

from gateway.mqtt.ledger import RetainedLedger

TOPICS = ("gw/m1/state", "gw/m1/availability", "homeassistant/sensor/gw_m1/use/config")


def test_topics_and_net_registers_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    RetainedLedger(path).record("m1", TOPICS, ["Grid"])  # no event loop: written at once
    again = RetainedLedger(path)
    again.load()
    assert again.meters() == ("m1",)
    assert again.topics("m1") == frozenset(TOPICS)
    assert again.net("m1") == frozenset({"Grid"})
    assert json.loads(path.read_text())["meters"]["m1"]["topics"] == sorted(TOPICS)


def test_an_unchanged_record_writes_nothing_and_keeps_the_strings_given(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    RetainedLedger(path).record("m1", TOPICS)
    ledger = RetainedLedger(path)
    ledger.load()
    path.unlink()
    given = ["".join(t) for t in reversed(TOPICS)] * 2  # equal strings, new objects, twice
    ledger.record("m1", given)
    assert not path.exists()  # the same set of topics: no write
    assert {id(t) for t in ledger.topics("m1")} == {id(t) for t in given[:3]}
    ledger.record("m1", [*TOPICS, "gw/m1/register/use"])
    assert "gw/m1/register/use" in json.loads(path.read_text())["meters"]["m1"]["topics"]


def test_a_broken_file_is_logged_and_read_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text('{"meters": {"m1": {"topics": 5}}}')
    ledger = RetainedLedger(path)
    with capture_logs() as logs:
        ledger.load()
    assert ledger.meters() == ()
    assert [e["event"] for e in logs] == ["ledger_unreadable"]
