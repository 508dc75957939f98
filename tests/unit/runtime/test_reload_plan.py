"""The plan of a configuration reload: which meters start, stop or restart, and which
sections wait for a restart."""

from __future__ import annotations

from dataclasses import replace

from gateway.config import (
    CommandLimits,
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
)
from gateway.runtime.reload import plan_reload
from gateway.secret import Secret


def meter(meter_id: str, **kw: object) -> MeterConfig:
    return MeterConfig(meter_id, f"http://{meter_id}.local", "owner", Secret("pw"),
                       **kw)  # type: ignore[arg-type]


def config(*meters: MeterConfig, **sections: object) -> Config:
    base = Config(GatewaySection(), meters, MqttConfig(), ModbusConfig(), HttpConfig(),
                  source="/etc/egauge-gateway/gateway.yaml")
    return replace(base, **sections)  # type: ignore[arg-type]


def test_added_removed_changed_and_kept_meters() -> None:
    running = config(meter("a"), meter("b"), meter("c", poll_interval_s=5))
    new = config(meter("a"), meter("c", poll_interval_s=2), meter("d"))
    plan = plan_reload(running, new)
    assert [m.id for m in plan.added] == ["d"]
    assert plan.removed == ("b",)
    assert [(m.id, m.poll_interval_s) for m in plan.changed] == [("c", 2)]
    assert plan.restarted == ("b", "c")
    assert [m.id for m in plan.started] == ["c", "d"]
    assert plan.config.meters == new.meters
    assert plan.restart_needed == ()
    assert not plan.empty


def test_a_changed_password_restarts_the_meter() -> None:
    running = config(meter("a"))
    new = config(replace(meter("a"), password=Secret("other")))
    assert [m.id for m in plan_reload(running, new).changed] == ["a"]


def test_other_sections_wait_for_a_restart_and_keep_running_values() -> None:
    running = config(meter("a"))
    new = config(meter("a"), mqtt=MqttConfig(host="broker.example"),
                 http=HttpConfig(port=9999))
    plan = plan_reload(running, new)
    assert plan.restart_needed == ("mqtt", "http")
    assert plan.config.mqtt == running.mqtt
    assert plan.config.http == running.http
    assert not plan.empty


def test_nothing_changed() -> None:
    running = config(meter("a"))
    assert plan_reload(running, config(meter("a"))).empty


def test_the_other_instances_meters_follow_the_reload() -> None:
    running = config(meter("a"), foreign_meters=("x",))
    plan = plan_reload(running, config(meter("a"), foreign_meters=("x", "y")))
    assert plan.config.foreign_meters == ("x", "y")
    assert plan_reload(running, config(meter("a"))).config.foreign_meters == ("x",)


def test_the_command_limits_wait_for_a_restart() -> None:
    running = config(meter("a"))
    plan = plan_reload(running, config(meter("a"), commands=CommandLimits(inbox=10)))
    assert plan.restart_needed == ("commands",)
    assert plan.config.commands == CommandLimits()
