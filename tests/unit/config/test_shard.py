"""Shard partitioning: deterministic, complete, disjoint and stable when meters are appended."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
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

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=24)
id_lists = st.lists(ids, min_size=1, max_size=60, unique=True)
counts = st.integers(min_value=1, max_value=12)


def meters(names: list[str]) -> tuple[MeterConfig, ...]:
    return tuple(MeterConfig(n, "http://meter.local", "owner", Secret("pw")) for n in names)


def config(names: list[str], index: int = 0, count: int = 1) -> Config:
    return Config(GatewaySection(id="site-a"), meters(names), MqttConfig(),
                  ModbusConfig(port=5020), HttpConfig(port=9120),
                  shard=ShardConfig(index, count))


def assignment(names: list[str], count: int) -> dict[str, int]:
    """Which instance polls each meter, read back from the partitions themselves."""
    found: dict[str, int] = {}
    for index in range(count):
        for m in shard.partition(meters(names), ShardConfig(index, count)):
            assert m.id not in found, f"{m.id} in shards {found[m.id]} and {index}"
            found[m.id] = index
    return found


@given(id_lists, counts)
def test_every_meter_is_polled_by_exactly_one_instance(names: list[str], count: int) -> None:
    found = assignment(names, count)
    assert sorted(found) == sorted(names)
    assert all(0 <= index < count for index in found.values())


@given(id_lists, counts, st.data())
def test_appending_meters_moves_no_existing_meter(names: list[str], count: int,
                                                  data: st.DataObject) -> None:
    extra = data.draw(st.lists(ids.filter(lambda n: n not in names), max_size=10, unique=True))
    before = assignment(names, count)
    after = assignment(names + extra, count)
    assert {n: after[n] for n in names} == before


@given(id_lists, counts, st.randoms())
def test_the_owner_does_not_depend_on_the_order_of_the_list(names: list[str], count: int,
                                                           rnd: random.Random) -> None:
    shuffled = list(names)
    rnd.shuffle(shuffled)
    assert assignment(shuffled, count) == assignment(names, count)


@given(id_lists, st.integers(min_value=1, max_value=11))
def test_one_more_instance_only_takes_meters_for_itself(names: list[str], count: int) -> None:
    """Rendezvous hashing: growing from n to n+1 instances moves meters only to the new one."""
    before, after = assignment(names, count), assignment(names, count + 1)
    moved = {n for n in names if before[n] != after[n]}
    assert all(after[n] == count for n in moved)


@settings(max_examples=20)
@given(id_lists, counts)
def test_the_partition_is_the_same_in_another_process(names: list[str], count: int) -> None:
    """No per-process hash seed: every instance of a fleet computes the same owners."""
    code = textwrap.dedent(f"""
        from gateway.config.shard import owner
        print(repr([owner(n, {count}) for n in {names!r}]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "random"})
    assert eval(out.stdout) == [assignment(names, count)[n] for n in names]


def test_a_large_fleet_is_spread_evenly() -> None:
    names = [f"meter-{i:04d}" for i in range(2000)]
    sizes = [list(assignment(names, 4).values()).count(i) for i in range(4)]
    assert sum(sizes) == 2000
    assert all(400 <= s <= 600 for s in sizes), sizes


def test_owner_refuses_a_count_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard.owner("main", 0)


def test_a_single_instance_keeps_meters_ports_and_topics() -> None:
    names = ["a", "b", "c"]
    view = shard.instance(config(names))
    assert [m.id for m in view.meters] == names
    assert view.foreign_meters == ()
    assert (view.modbus.port, view.http.port) == (5020, 9120)
    assert shard.bridge_level(view) == "bridge"
    assert shard.instance_name(view) == "site-a"


def test_an_instance_gets_its_meters_ports_and_bridge() -> None:
    names = [f"m{i}" for i in range(30)]
    views = [shard.instance(config(names, i, 3)) for i in range(3)]
    for i, view in enumerate(views):
        own = [m.id for m in view.meters]
        assert own == [n for n in names if n in own]  # configured order kept
        assert sorted(own + list(view.foreign_meters or ())) == sorted(names)
        assert (view.modbus.port, view.http.port) == (5020 + i, 9120 + i)
        assert shard.bridge_level(view) == f"bridge/site-a-{i}"
    assert sum(len(v.meters) for v in views) == len(names)


def test_instance_is_applied_once() -> None:
    view = shard.instance(config([f"m{i}" for i in range(9)], 2, 3))
    assert shard.instance(view) is view


def test_port_zero_stays_any_free_port() -> None:
    cfg = replace(config(["a"], 1, 2), modbus=ModbusConfig(port=0), http=HttpConfig(port=0))
    view = shard.instance(cfg)
    assert (view.modbus.port, view.http.port) == (0, 0)


METERS = """
meters:
  - {id: a, url: 'http://a.local', username: owner, password: '${PW}', modbus_unit_id: 1}
  - {id: b, url: 'http://b.local', username: owner, password: '${PW}', modbus_unit_id: 2}
"""


def load(tmp_path: Path, shard_yaml: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "gateway.yaml"
    path.write_text(METERS + shard_yaml, encoding="utf-8")
    path.chmod(0o600)
    return load_config(path, env={"PW": "pw", **(env or {})})


def problems(tmp_path: Path, shard_yaml: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, shard_yaml, env)
    return list(info.value.problems)


def test_config_without_shard_is_one_instance(tmp_path: Path) -> None:
    assert load(tmp_path, "").shard == ShardConfig(0, 1)


def test_config_reads_the_index_from_the_environment(tmp_path: Path) -> None:
    cfg = load(tmp_path, "shard: {index: '${SHARD_INDEX}', count: 4}", {"SHARD_INDEX": "3"})
    assert cfg.shard == ShardConfig(3, 4)


@pytest.mark.parametrize(("shard_yaml", "env", "expected"), [
    pytest.param("shard: {index: 2, count: 2}", {},
                 ["shard.index: must be below shard.count (2) (got 2)"], id="index-too-big"),
    pytest.param("shard: {index: -1, count: 2}", {},
                 ["shard.index: must be an integer >= 0 or auto (got -1)"], id="index-negative"),
    pytest.param("shard: {index: 0, count: 0}", {},
                 ["shard.count: must be an integer >= 1 (got 0)"], id="count-zero"),
    pytest.param("shard: {count: 3}", {},
                 ["shard.index: required key missing when count is above 1 (3)"],
                 id="index-missing"),
    pytest.param("shard: {index: '${SHARD_INDEX}', count: 2}", {},
                 ["shard.index: environment variable SHARD_INDEX is not set"], id="env-unset"),
    pytest.param("shard: {index: '${SHARD_INDEX}', count: 2}", {"SHARD_INDEX": "one"},
                 ["shard.index: must be an integer >= 0 or auto (got 'one')"],
                 id="env-not-a-number"),
    pytest.param("shard: {index: 1, cuont: 2}", {},
                 ["shard.cuont: unknown key (did you mean 'count'?)",
                  "shard.index: must be below shard.count (1) (got 1)"], id="typo"),
    pytest.param("shard: 3", {}, ["shard: must be a mapping (got 3)"], id="not-a-mapping"),
    pytest.param("modbus: {port: 65535}\nshard: {index: 1, count: 2}", {},
                 ["shard.index: modbus.port + index (65536) is not a port 1-65535 (got 1)"],
                 id="port-overflow"),
])
def test_config_problem_lines(tmp_path: Path, shard_yaml: str, env: dict[str, str],
                              expected: list[str]) -> None:
    assert problems(tmp_path, shard_yaml, env) == expected


def test_instance_files_and_names(tmp_path: Path) -> None:
    def view(index: int, count: int) -> Config:
        cfg = config(["a", "b"], index, count)
        return replace(cfg, gateway=replace(cfg.gateway, state_dir=str(tmp_path)))

    assert shard.instance_dir(view(0, 1)) == tmp_path
    assert shard.instance_dir(view(0, 3)) == tmp_path
    assert shard.instance_dir(view(2, 3)) == tmp_path / "instance-2"
    assert shard.suffixed(view(0, 1), "egauge-gateway-site-a") == "egauge-gateway-site-a"
    assert shard.suffixed(view(2, 3), "egauge-gateway-site-a") == "egauge-gateway-site-a-2"


def test_a_reload_keeps_the_running_split() -> None:
    names = [f"m{i}" for i in range(12)]
    running = shard.instance(config(names, 1, 3))
    same, changed = shard.reloaded(running, config([*names, "new"], 1, 3))
    assert not changed
    assert [m.id for m in same.meters] == [m.id for m in running.meters] + (
        ["new"] if shard.owner("new", 3) == 1 else [])
    assert same.modbus.port == running.modbus.port
    resplit, changed = shard.reloaded(running, config(names, 1, 4))
    assert changed
    assert [m.id for m in resplit.meters] == [m.id for m in running.meters]
