"""gateway.workers and shard.index: auto: parsing, the split of one instance among its
workers, and what a worker process runs (names, ports, state files)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import (
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
    ShardConfig,
    load_config,
    shard,
)
from gateway.errors import ConfigError
from gateway.secret import Secret

METERS = """
meters:
  - {id: a, url: 'http://a.local', username: owner, password: '${PW}', modbus_unit_id: 1}
  - {id: b, url: 'http://b.local', username: owner, password: '${PW}', modbus_unit_id: 2}
"""
ids = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1,
                       max_size=16), min_size=1, max_size=60, unique=True)


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "gateway.yaml"
    path.write_text(METERS + text, encoding="utf-8")
    return load_config(path, env={"PW": "pw", **(env or {})})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return list(info.value.problems)


def config(names: list[str], index: int = 0, count: int = 1, workers: int = 1) -> Config:
    return Config(GatewaySection(id="site", workers=workers, state_dir="/var/lib/gw"),
                  tuple(MeterConfig(n, "http://meter.local", "owner", Secret("pw"))
                        for n in names),
                  MqttConfig(), ModbusConfig(host="0.0.0.0", port=5020),
                  HttpConfig(port=9120), shard=ShardConfig(index, count))


def test_workers_default_to_one_and_take_a_number_or_auto(tmp_path: Path) -> None:
    assert load(tmp_path, "").gateway.workers == 1
    assert load(tmp_path, "gateway: {workers: 4}").gateway.workers == 4
    assert load(tmp_path, "gateway: {workers: auto}").gateway.workers == "auto"
    assert load(tmp_path, "gateway: {workers: '${W}'}", {"W": "3"}).gateway.workers == 3


@pytest.mark.parametrize("value", ["0", "two", "257", "true", "1.5"])
def test_a_bad_worker_count_is_one_clear_problem(tmp_path: Path, value: str) -> None:
    assert problems(tmp_path, f"gateway: {{workers: {value}}}") == [
        f"gateway.workers: must be an integer 1-256 or auto (got {load_yaml_scalar(value)})"]


def load_yaml_scalar(text: str) -> str:
    import yaml

    return repr(yaml.safe_load(text)).replace("True", "true")


def test_auto_counts_the_cpus_the_process_may_use() -> None:
    cfg = config(["a"], workers=1)
    auto = replace(cfg, gateway=replace(cfg.gateway, workers="auto"))
    assert shard.worker_count(auto, cpus=6) == 6
    assert shard.worker_count(cfg, cpus=6) == 1
    assert shard.worker_count(auto) >= 1


@pytest.mark.parametrize(("host", "count", "index"), [
    ("egauge-gateway-0", 3, 0), ("egauge-gateway-2", 3, 2), ("gw-10", 12, 10)])
def test_shard_index_auto_is_the_ordinal_of_the_host_name(tmp_path: Path, host: str,
                                                          count: int, index: int) -> None:
    cfg = load(tmp_path, "shard: {index: auto, count: '${REPLICAS}'}",
               {"HOSTNAME": host, "REPLICAS": str(count)})
    assert cfg.shard == ShardConfig(index, count)


@pytest.mark.parametrize(("host", "expected"), [
    ("egauge-gateway", "shard.index: auto needs a host name that ends in -<ordinal> (a "
                       "StatefulSet's pod) (got 'egauge-gateway')"),
    ("egauge-gateway-3", "shard.index: the host name's ordinal (3) must be below shard.count "
                         "(3) (got 'egauge-gateway-3')"),
])
def test_shard_index_auto_refuses_a_host_name_without_a_fitting_ordinal(
        tmp_path: Path, host: str, expected: str) -> None:
    assert problems(tmp_path, "shard: {index: auto, count: 3}", {"HOSTNAME": host}) == [expected]


def worker_split(names: list[str], index: int, count: int, workers: int) -> list[list[str]]:
    cfg = config(names, index, count)
    return [[m.id for m in own] for own in shard.worker_meters(cfg, workers)]


@given(ids, st.integers(1, 4), st.integers(1, 8))
def test_the_workers_of_an_instance_share_its_meters_exactly_once(
        names: list[str], count: int, workers: int) -> None:
    instance = [m.id for m in shard.partition(config(names).meters, ShardConfig(0, count))]
    split = worker_split(names, 0, count, workers)
    flat = [m for own in split for m in own]
    assert sorted(flat) == sorted(instance)
    for j, own in enumerate(split):  # each worker's own view of the file says the same
        view = shard.instance(replace(config(names, 0, count), worker=ShardConfig(j, workers)))
        assert [m.id for m in view.meters] == own
        assert set(view.foreign_meters or ()) == set(names) - set(own)


@given(ids, st.integers(1, 8), st.text(alphabet="xyz", min_size=1, max_size=6))
def test_an_appended_meter_moves_no_other_meter_between_workers(
        names: list[str], workers: int, new: str) -> None:
    before = worker_split(names, 0, 1, workers)
    after = worker_split([*names, "new-" + new], 0, 1, workers)
    assert [[m for m in own if m != "new-" + new] for own in after] == before


def test_the_worker_split_does_not_follow_the_instance_split() -> None:
    """Workers use a hash of their own: with the same count as the instances, an instance's
    meters still spread over every worker (with the instance hash all would land on one)."""
    names = [f"m{i:03d}" for i in range(400)]
    split = worker_split(names, 1, 2, 2)
    assert all(len(own) > 50 for own in split), [len(own) for own in split]


def test_a_worker_runs_loopback_ports_of_its_own_names_and_files() -> None:
    cfg = config(["a", "b", "c"], 1, 2)
    view = shard.instance(replace(cfg, worker=ShardConfig(1, 3)))
    assert (view.modbus.host, view.modbus.port, view.http.host, view.http.port) == (
        "127.0.0.1", 0, "127.0.0.1", 0)
    assert shard.instance_name(view) == "site-1"  # the instance's bridge device and topics
    assert shard.bridge_level(view) == "bridge/site-1"
    assert shard.process_name(view) == "site-1-w1"
    assert shard.session_bridge_level(view) == "bridge/site-1-w1"
    assert shard.suffixed(view, "egauge-gateway-site") == "egauge-gateway-site-1-w1"
    assert shard.instance_dir(view) == Path("/var/lib/gw/instance-1/worker-1")
    first = shard.instance(replace(config(["a"]), worker=ShardConfig(0, 3)))
    assert shard.instance_dir(first) == Path("/var/lib/gw")  # worker 0 keeps the files
    assert shard.bridge_level(first) == "bridge"
    assert shard.session_bridge_level(first) == "bridge/site-w0"


def test_without_workers_nothing_changes() -> None:
    cfg = config(["a", "b"])
    view = shard.instance(cfg)
    assert (view.modbus.port, view.http.port) == (5020, 9120)
    assert shard.session_bridge_level(view) == shard.bridge_level(view) == "bridge"
    assert shard.process_name(view) == shard.instance_name(view) == "site"
    assert shard.suffixed(view, "x") == "x"


def test_a_reload_keeps_the_workers_slot() -> None:
    names = [f"m{i}" for i in range(20)]
    running = shard.instance(replace(config(names), worker=ShardConfig(1, 2)))
    view, changed = shard.reloaded(running, config([*names, "new"]))
    assert not changed
    assert view.worker == ShardConfig(1, 2)
    expected = [m.id for m in running.meters] + (["new"] if shard.worker_owner("new", 2) == 1
                                                 else [])
    assert [m.id for m in view.meters] == expected


def test_port_offset_false_keeps_the_configured_ports_on_every_instance(tmp_path: Path) -> None:
    """Pods of a StatefulSet each have an address of their own: the same ports on each."""
    text = "modbus: {port: 65535}\nshard: {index: auto, count: 3, port_offset: false}"
    for ordinal in range(3):
        cfg = load(tmp_path, text, {"HOSTNAME": f"egauge-gateway-{ordinal}"})
        view = shard.instance(cfg)
        assert (view.modbus.port, view.http.port) == (65535, 9120)
    offset = shard.instance(load(tmp_path, "shard: {index: 2, count: 3}"))
    assert (offset.modbus.port, offset.http.port) == (5022, 9122)
