"""Writes from a Sparkplug host: DCMD metrics as router requests, and what the Edge Node does
with NCMD and DCMD payloads it cannot read (counted, logged once per minute, nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.config import (
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
    SparkplugConfig,
)
from gateway.mqtt import InboundMessage
from gateway.secret import Secret
from gateway.sparkplug import create_output
from gateway.sparkplug.commands import REBIRTH, Throttle, Write, device_write
from gateway.sparkplug.payload import DataType, Metric, Payload, Property, Value, encode
from tests.support.simulator import ManualClock


def write(name: str, value: Value, *props: Property) -> Write | str | None:
    return device_write(name, Metric(name, None, DataType.BOOLEAN, value, properties=props))


def test_relay_writes_become_relay_requests() -> None:
    assert write("Relays/2", True) == Write("relay", {"relay": 2, "state": "closed"}, 2, True)
    assert write("Relays/1", False) == Write("relay", {"relay": 1, "state": "open"}, 1, False)


def test_dry_run_and_transaction_properties_are_handed_on() -> None:
    got = write("Relays/3", True, Property("dry_run", DataType.BOOLEAN, True),
                Property("transaction", DataType.STRING, "t-9"),
                Property("engUnit", DataType.STRING, "W"))
    assert isinstance(got, Write)
    assert got.fields == {"relay": 3, "state": "closed", "dry_run": True, "transaction": "t-9"}


def test_a_value_of_the_wrong_type_goes_to_the_router_as_it_is() -> None:
    # so the router refuses it (invalid) and audits the attempt
    assert write("Relays/1", 1) == Write("relay", {"relay": 1, "state": 1}, 1, None)
    assert write("Relays/1", b"\x01") == Write("relay", {"relay": 1, "state": "<1 bytes>"}, 1,
                                               None)
    assert write("Device Control/Reboot", "now") == Write("reboot", {"value": "now"})


def test_momentary_controls_act_on_true_only() -> None:
    assert write("Device Control/Reboot", True) == Write("reboot", {})
    assert write("Device Control/Reboot", False) is None
    assert write("Device Control/Rebirth", True) == REBIRTH
    assert write("Device Control/Rebirth", False) is None


@pytest.mark.parametrize("name", ["Registers/grid/Rate", "Relays/", "Relays/x", "Relays/1/2",
                                  "Status/Online", "Node Control/Rebirth"])
def test_metrics_that_are_not_writable_ask_for_nothing(name: str) -> None:
    assert write(name, True) is None


def test_throttle_lets_one_event_per_interval_through_and_counts_the_rest() -> None:
    clock = ManualClock()
    throttle = Throttle(60.0, clock)
    assert throttle.allow("a") == 0
    assert throttle.allow("a") is None
    assert throttle.allow("b") == 0  # per key
    clock.advance(30)
    assert throttle.allow("a") is None
    clock.advance(30)
    assert throttle.allow("a") == 2  # two held back since the last one


def config(tmp_path: Path) -> Config:
    meter = MeterConfig("main", "http://127.0.0.1:9", "owner", Secret("pw"))
    return Config(gateway=GatewaySection(id="gw", state_dir=str(tmp_path)), meters=(meter,),
                  mqtt=MqttConfig(port=9), modbus=ModbusConfig(enabled=False),
                  http=HttpConfig(enabled=False),
                  sparkplug=SparkplugConfig(enabled=True, group_id="site"))


async def test_malformed_ncmd_and_dcmd_are_counted_logged_once_and_change_nothing(
        tmp_path: Path) -> None:
    output = create_output(config(tmp_path))
    await output.start()
    garbage = [b"\xff\xff\xff", b"\x12\x10\x0a", b"\x00" * 300_000]
    with capture_logs() as logs:
        for data in garbage:
            output.receive_ncmd(InboundMessage("spBv1.0/site/NCMD/gw", data))
            output.receive_dcmd(InboundMessage("spBv1.0/site/DCMD/gw/main", data))
    assert output.stats.malformed == 6
    events = [e for e in logs if e["event"] == "sparkplug_command_malformed"]
    assert [(e["verb"], e["held_back"]) for e in events] == [("NCMD", 0), ("DCMD", 0)]
    assert events[0]["topic"] == "spBv1.0/site/NCMD/gw"
    assert events[0]["size"] == 3
    # nothing changed: no birth, no seq used, nothing sent or queued, nothing pinned
    assert (output.born, output.seq.last, output.stats.births) == (False, None, 0)
    conn = output.connection.stats
    assert (conn.published, conn.queued) == (0, 0)
    assert not (tmp_path / "sparkplug" / "aliases.json").exists()


async def test_commands_without_a_session_or_for_unknown_devices_change_nothing(
        tmp_path: Path) -> None:
    output = create_output(config(tmp_path))
    await output.start()
    rebirth = encode(Payload((Metric("Node Control/Rebirth", None, DataType.BOOLEAN, True),)))
    relay = encode(Payload((Metric("Relays/1", None, DataType.BOOLEAN, True),)))
    with capture_logs() as logs:
        output.receive_ncmd(InboundMessage("spBv1.0/site/NCMD/gw", rebirth))  # not connected
        output.receive_ncmd(InboundMessage("spBv1.0/site/NCMD/gw", rebirth, retain=True))
        output.receive_dcmd(InboundMessage("spBv1.0/site/DCMD/gw/attic", relay))
        output.receive_dcmd(InboundMessage("spBv1.0/site/DCMD/gw/main", relay))  # no router
    assert output.stats.ignored == 4
    assert (output.stats.malformed, output.stats.births, output.stats.rebirths) == (0, 0, 0)
    reasons = [e["reason"] for e in logs if e["event"] == "sparkplug_command_ignored"]
    assert reasons == ["no session to rebirth", "retained", "unknown device",
                       "no command router"]
    assert output.connection.stats.published == 0
