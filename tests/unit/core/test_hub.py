"""Hub: latest state per meter and fan-out to sinks (one broken sink does not stop others)."""

from __future__ import annotations

from dataclasses import replace

import structlog

from gateway.core import Hub
from gateway.model import Availability, Identity, Reading, RegisterInfo, RegisterValue
from tests.support.recorder import Recorder


class Broken(Recorder):
    def on_reading(self, reading: Reading) -> None:
        raise RuntimeError("disk full")


IDENT = Identity("G12345", "EG4030", "4.6.2", "egauge12345")
REGS = (RegisterInfo("Grid", "P", 0, 0), RegisterInfo("Solar+", "P", 1, 1))


def reading(ts: float, rate: float) -> Reading:
    return Reading("main", ts, (RegisterValue("Grid", "P", "W", rate, 1.0, "kWh"),))


def test_every_sink_receives_every_update_in_order() -> None:
    hub = Hub(["main"])
    first, second = Recorder(), Recorder()
    hub.add_sink(first)
    hub.add_sink(second)
    r = reading(100.0, 5.0)
    av = Availability("main", True, 100.0, "first_poll")
    hub.publish_identity("main", IDENT)
    hub.publish_registers("main", REGS)
    hub.publish_reading(r)
    hub.publish_availability(av)
    expected = [
        ("identity", ("main", IDENT)),
        ("registers", ("main", REGS)),
        ("reading", r),
        ("availability", av),
    ]
    assert first.events == expected
    assert second.events == expected


def test_latest_state_and_snapshot() -> None:
    hub = Hub(["main", "garage"])
    assert hub.meter("main").reading is None
    hub.publish_identity("main", IDENT)
    hub.publish_reading(reading(100.0, 5.0))
    newest = reading(101.0, 6.0)
    hub.publish_reading(newest)
    snap = hub.snapshot()
    assert set(snap) == {"main", "garage"}
    assert snap["main"].reading == newest
    assert snap["main"].identity == IDENT
    assert snap["garage"].identity is None
    hub.publish_reading(reading(102.0, 7.0))
    assert snap["main"].reading == newest  # a snapshot is a copy, not a live view
    assert hub.meter("main").reading is not None
    assert hub.meter("main").reading.ts == 102.0


def test_a_raising_sink_is_logged_and_does_not_starve_the_others() -> None:
    hub = Hub(["main"])
    broken, healthy = Broken(), Recorder()
    hub.add_sink(broken)
    hub.add_sink(healthy)
    r = reading(100.0, 5.0)
    with structlog.testing.capture_logs() as logs:
        hub.publish_reading(r)
    assert healthy.events == [("reading", r)]
    failures = [e for e in logs if e["event"] == "sink_failed"]
    assert len(failures) == 1
    assert failures[0]["sink"] == "Broken"
    assert failures[0]["meter"] == "main"
    assert "disk full" in failures[0]["error"]
    assert hub.meter("main").reading == r  # the state is kept all the same


def test_removed_sink_gets_nothing() -> None:
    hub = Hub()
    sink = Recorder()
    hub.add_sink(sink)
    hub.remove_sink(sink)
    hub.publish_identity("x", IDENT)
    assert sink.events == []
    assert hub.meters == ("x",)


def test_stages_hand_the_sinks_a_richer_reading_and_a_failing_stage_is_skipped() -> None:
    hub = Hub(["main"])
    sink = Recorder()

    def broken(reading: Reading) -> Reading:
        raise RuntimeError("bug")

    hub.add_sink(sink)
    hub.add_stage(lambda r: replace(r, ts=r.ts + 1))
    hub.add_stage(broken)
    hub.add_stage(lambda r: replace(r, received=r.ts * 2))
    with structlog.testing.capture_logs() as logs:
        hub.publish_reading(Reading("main", 10.0, ()))
    seen = sink.readings
    assert [(r.ts, r.received) for r in seen] == [(11.0, 22.0)]
    assert hub.meter("main").reading == seen[0]
    assert [e["event"] for e in logs] == ["stage_failed"]
