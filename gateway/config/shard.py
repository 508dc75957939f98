"""Scale-out: ``shard: {index: i, count: n}`` splits one configuration over n gateway instances.

Each meter belongs to exactly one instance, chosen by rendezvous (highest random weight)
hashing of the meter id: the instance ``k`` with the largest ``blake2b(k, id)`` owns it. The
owner depends only on the meter's id and ``count`` -- not on the order of the meters list or
on the other meters -- so appending, removing or reordering meters never moves a meter, and
changing ``count`` from n to n+1 moves only the meters the new instance wins (about 1/(n+1)).

:func:`instance` turns the configuration as written into what instance ``index`` runs: its
own meters, its own Modbus and HTTP ports (``port + index``, unless ``port_offset: false``)
and the ids of the meters the other instances poll (so that their retained MQTT topics are
left alone). A single-instance configuration (``count: 1``) keeps its meters, ports and
topics unchanged.

Workers (``gateway.workers``) split one instance further, the same way: worker ``j`` of ``n``
polls the instance's meters whose highest ``blake2b("w<j>", id)`` weight is its own (a hash
of its own, so the split among workers does not depend on the split among instances). A
worker process is told its slot by its supervisor (``Config.worker``); it listens on loopback
ports of its own (the supervisor serves the configured ones) and keeps its whole-process
state files in ``<instance dir>/worker-<j>`` (worker 0: the instance's directory).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from gateway.config.types import Config, MeterConfig, ShardConfig


def weight(index: int, meter_id: str, salt: str = "") -> int:
    """The rendezvous weight of instance ``index`` for one meter (stable across processes)."""
    digest = hashlib.blake2b(f"{salt}{index}\x00{meter_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(meter_id: str, count: int, salt: str = "") -> int:
    """The index of the instance (``0 <= index < count``) that polls ``meter_id``; with
    ``salt`` (``"w"``: workers) another, independent split."""
    if count < 1:
        raise ValueError(f"a shard count must be at least 1 (got {count})")
    if count == 1:
        return 0
    return max(range(count), key=lambda index: (weight(index, meter_id, salt), -index))


def partition(meters: Iterable[MeterConfig], shard: ShardConfig,
              salt: str = "") -> tuple[MeterConfig, ...]:
    """The meters that instance ``shard.index`` polls, in their configured order."""
    return tuple(m for m in meters if owner(m.id, shard.count, salt) == shard.index)


WORKER_SALT = "w"
LOOPBACK = "127.0.0.1"


def worker_owner(meter_id: str, workers: int) -> int:
    """The worker (``0 <= j < workers``) of an instance that polls ``meter_id``."""
    return owner(meter_id, workers, WORKER_SALT)


def owns(config: Config, meter_id: str) -> bool:
    """Whether this process would poll ``meter_id`` (its instance's share and, in a worker
    process, its worker's), configured or not: the one process that answers a request for
    an unknown id."""
    shard, worker = config.shard, config.worker
    if owner(meter_id, shard.count) != shard.index:
        return False
    return worker is None or worker_owner(meter_id, worker.count) == worker.index


def instance(config: Config) -> Config:
    """The configuration as instance ``config.shard.index`` runs it -- and, in a worker
    process, as its worker ``config.worker`` runs it (applied once: a config that already is
    an instance's view is returned as it is)."""
    if config.foreign_meters is not None:
        return config
    shard, worker = config.shard, config.worker
    own = partition(config.meters, shard)
    offset = shard.index if shard.port_offset else 0
    modbus = replace(config.modbus, port=_port(config.modbus.port, offset))
    http = replace(config.http, port=_port(config.http.port, offset))
    if worker is not None:
        own = partition(own, worker, WORKER_SALT)
        modbus = replace(modbus, host=LOOPBACK, port=0)  # the supervisor serves modbus.port
        http = replace(http, host=LOOPBACK, port=0)
    mine = {m.id for m in own}
    foreign = tuple(m.id for m in config.meters if m.id not in mine)
    return replace(config, meters=own, foreign_meters=foreign, modbus=modbus, http=http)


def worker_count(config: Config, cpus: int | None = None) -> int:
    """How many worker processes ``gateway.workers`` asks for: the number, or for ``auto``
    the CPUs this process may run on (``cpus``: that count, for tests)."""
    workers = config.gateway.workers
    if workers != "auto":
        return workers
    return max(1, cpus if cpus is not None else len(os.sched_getaffinity(0)))


def worker_meters(config: Config, workers: int) -> list[tuple[MeterConfig, ...]]:
    """The meters of each of ``workers`` workers of this instance, in configured order."""
    own = partition(config.meters, config.shard)
    return [partition(own, ShardConfig(j, workers), WORKER_SALT) for j in range(workers)]


def _port(port: int, index: int) -> int:
    """Instance ``index`` listens on ``port + index`` (0, "any free port", stays 0)."""
    return port + index if port else 0


def sharded(config: Config) -> bool:
    """Whether this configuration is split over more than one instance."""
    return config.shard.count > 1


def _instance_suffixed(config: Config, name: str) -> str:
    return f"{name}-{config.shard.index}" if sharded(config) else name


def suffixed(config: Config, name: str) -> str:
    """``<name>-<index>`` for a shard, ``name`` alone for a single instance, and ``-w<j>``
    more in worker ``j`` (MQTT client ids, Sparkplug edge nodes: each process needs its
    own)."""
    name = _instance_suffixed(config, name)
    return name if config.worker is None else f"{name}-w{config.worker.index}"


def instance_name(config: Config) -> str:
    """``<gateway id>-<index>`` for a shard, the gateway id alone for a single instance (the
    same in each of its workers: they share the instance's bridge)."""
    return _instance_suffixed(config, config.gateway.id)


def process_name(config: Config) -> str:
    """The name of this process: the instance's, with ``-w<j>`` in worker ``j``."""
    return suffixed(config, config.gateway.id)


def instance_dir(config: Config) -> Path:
    """Where the state files of a whole instance live (the MQTT output's retained-topic list,
    the history watermarks): ``gateway.state_dir`` for instance 0 (and a single instance),
    ``<state_dir>/instance-<i>`` for the others. Files of one meter each, such as the Modbus
    pins, stay in the shared ``state_dir``, so a meter keeps them when it changes instance."""
    state_dir = Path(config.gateway.state_dir)
    index = config.shard.index
    folder = state_dir / f"instance-{index}" if index else state_dir
    worker = config.worker
    return folder / f"worker-{worker.index}" if worker is not None and worker.index else folder


def bridge_level(config: Config) -> str:
    """The topic levels of this instance's bridge topics below the base topic:
    ``bridge`` for a single instance, ``bridge/<gateway id>-<index>`` for a shard (the same
    in every worker of the instance: its supervisor publishes them)."""
    return f"bridge/{instance_name(config)}" if sharded(config) else "bridge"


def session_bridge_level(config: Config) -> str:
    """Where this process's own MQTT session says whether it is alive (its will): the
    instance's bridge, or ``bridge/<instance name>-w<j>`` in worker ``j``."""
    if config.worker is None:
        return bridge_level(config)
    return f"bridge/{process_name(config)}"


def reloaded(running: Config, loaded: Config) -> tuple[Config, bool]:
    """A reloaded configuration as the running instance applies it: split with the running
    ``shard`` settings (a new split needs a restart of every instance, so that no meter is
    polled twice or cleared by the instance it left) and, in a worker, its running slot;
    and whether ``shard`` changed."""
    view = instance(replace(loaded, shard=running.shard, worker=running.worker,
                            foreign_meters=None))
    return view, loaded.shard != running.shard
