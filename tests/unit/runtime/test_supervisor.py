"""The supervisor's pieces without processes: how many workers run, the worker slot of the
command line, exit descriptions, notify datagrams, and the Modbus routing by unit id."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from gateway.config import (
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
    ShardConfig,
    shard,
)
from gateway.modbus import DOWN
from gateway.runtime.notify import Notifier
from gateway.runtime.supervisor import Supervisor, effective_workers
from gateway.runtime.worker import parse_slot
from gateway.runtime.workerproc import WorkerProcess, describe_exit, parse_fields
from gateway.secret import Secret


def config(meters: int, workers: int | str = 2, index: int = 0, count: int = 1) -> Config:
    return Config(GatewaySection(id="site", workers=workers),  # type: ignore[arg-type]
                  tuple(MeterConfig(f"m{i}", "http://meter.local", "owner", Secret("pw"),
                                    modbus_unit_id=i + 1) for i in range(meters)),
                  MqttConfig(enabled=False), ModbusConfig(host="127.0.0.1", port=5020),
                  HttpConfig(enabled=False), source="/etc/egauge-gateway/gateway.yaml",
                  shard=ShardConfig(index, count))


def test_workers_never_outnumber_the_meters_of_the_instance() -> None:
    assert effective_workers(config(10, 4)) == 4
    assert effective_workers(config(3, 8)) == 3
    assert effective_workers(config(1, 2)) == 1  # one process: no supervisor at all
    assert effective_workers(config(10, "auto"), cpus=6) == 6
    assert effective_workers(config(10, "auto"), cpus=1) == 1
    sharded = config(40, 4, index=1, count=2)
    mine = len(shard.partition(sharded.meters, sharded.shard))
    assert effective_workers(replace(sharded, gateway=replace(sharded.gateway, workers=64))
                             ) == mine


@pytest.mark.parametrize(("text", "slot"), [
    ("0/2", ShardConfig(0, 2)), ("3/4", ShardConfig(3, 4)), ("2/2", None), ("1", None),
    ("a/2", None), ("-1/2", None), ("", None)])
def test_the_worker_slot_on_the_command_line(text: str, slot: ShardConfig | None) -> None:
    assert parse_slot(text) == slot


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(78) == "exit code 78"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"


def test_notify_datagrams_are_read_as_fields() -> None:
    assert parse_fields(b"READY=1\nSTATUS=3 of 3 meters online\nEGAUGE_MODBUS_PORT=4021\n"
                        b"junk\n") == {"READY": "1", "STATUS": "3 of 3 meters online",
                                       "EGAUGE_MODBUS_PORT": "4021"}


def test_a_workers_notifications_make_it_ready_with_its_ports() -> None:
    seen: list[int] = []
    w = WorkerProcess(1, 2, "/x.yaml", ["m1"], on_ready=lambda worker: seen.append(worker.index))
    w.state = "running"
    w.notified({"READY": "1", "EGAUGE_MODBUS_PORT": "4021", "EGAUGE_HTTP_PORT": "9000"})
    assert (w.ready, w.modbus_port, w.http_port, seen) == (True, 4021, 9000, [1])
    w.notified({"RELOADING": "1"})
    assert not w.ready
    w.notified({"READY": "1", "EGAUGE_MODBUS_PORT": "99999"})  # not a port: the old one stays
    assert (w.ready, w.modbus_port) == (True, 4021)
    w.notified({"STOPPING": "1"})
    assert (w.ready, w.state) == (False, "stopping")
    assert w.command()[-4:] == ["-c", "/x.yaml", "--worker", "1/2"]


def test_modbus_requests_are_routed_to_the_worker_of_the_units_meter() -> None:
    cfg = config(12, 2)
    sup = Supervisor(cfg, notifier=Notifier(None))
    owners = {m.modbus_unit_id: shard.worker_owner(m.id, 2) for m in cfg.meters}
    assert sup.route(99) is None  # no meter has it
    assert all(sup.route(unit) is DOWN for unit in owners)  # nothing ready yet
    ready = sup.workers[1]
    ready.state, ready.ready, ready.modbus_port = "running", True, 4111
    for unit, owner in owners.items():
        assert sup.route(unit) == (("127.0.0.1", 4111) if owner == 1 else DOWN)
    assert sorted(m for w in sup.workers for m in w.meters) == sorted(m.id for m in cfg.meters)
