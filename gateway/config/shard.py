"""Scale-out: ``shard: {index: i, count: n}`` splits one configuration over n gateway instances.

Each meter belongs to exactly one instance, chosen by rendezvous (highest random weight)
hashing of the meter id: the instance ``k`` with the largest ``blake2b(k, id)`` owns it. The
owner depends only on the meter's id and ``count`` -- not on the order of the meters list or
on the other meters -- so appending, removing or reordering meters never moves a meter, and
changing ``count`` from n to n+1 moves only the meters the new instance wins (about 1/(n+1)).

:func:`instance` turns the configuration as written into what instance ``index`` runs: its
own meters, its own Modbus and HTTP ports (``port + index``) and the ids of the meters the
other instances poll (so that their retained MQTT topics are left alone). A single-instance
configuration (``count: 1``) keeps its meters, ports and topics unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from gateway.config.types import Config, MeterConfig, ShardConfig


def weight(index: int, meter_id: str) -> int:
    """The rendezvous weight of instance ``index`` for one meter (stable across processes)."""
    digest = hashlib.blake2b(f"{index}\x00{meter_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(meter_id: str, count: int) -> int:
    """The index of the instance (``0 <= index < count``) that polls ``meter_id``."""
    if count < 1:
        raise ValueError(f"a shard count must be at least 1 (got {count})")
    if count == 1:
        return 0
    return max(range(count), key=lambda index: (weight(index, meter_id), -index))


def partition(meters: Iterable[MeterConfig], shard: ShardConfig) -> tuple[MeterConfig, ...]:
    """The meters that instance ``shard.index`` polls, in their configured order."""
    return tuple(m for m in meters if owner(m.id, shard.count) == shard.index)


def instance(config: Config) -> Config:
    """The configuration as instance ``config.shard.index`` runs it (applied once: a config
    that already is an instance's view is returned as it is)."""
    if config.foreign_meters is not None:
        return config
    shard = config.shard
    own = partition(config.meters, shard)
    mine = {m.id for m in own}
    foreign = tuple(m.id for m in config.meters if m.id not in mine)
    return replace(
        config,
        meters=own,
        foreign_meters=foreign,
        modbus=replace(config.modbus, port=_port(config.modbus.port, shard.index)),
        http=replace(config.http, port=_port(config.http.port, shard.index)),
    )


def _port(port: int, index: int) -> int:
    """Instance ``index`` listens on ``port + index`` (0, "any free port", stays 0)."""
    return port + index if port else 0


def sharded(config: Config) -> bool:
    """Whether this configuration is split over more than one instance."""
    return config.shard.count > 1


def suffixed(config: Config, name: str) -> str:
    """``<name>-<index>`` for a shard, ``name`` alone for a single instance (MQTT client ids,
    the bridge's name: each instance needs its own)."""
    return f"{name}-{config.shard.index}" if sharded(config) else name


def instance_name(config: Config) -> str:
    """``<gateway id>-<index>`` for a shard, the gateway id alone for a single instance."""
    return suffixed(config, config.gateway.id)


def instance_dir(config: Config) -> Path:
    """Where the state files of a whole instance live (the MQTT output's retained-topic list,
    the history watermarks): ``gateway.state_dir`` for instance 0 (and a single instance),
    ``<state_dir>/instance-<i>`` for the others. Files of one meter each, such as the Modbus
    pins, stay in the shared ``state_dir``, so a meter keeps them when it changes instance."""
    state_dir = Path(config.gateway.state_dir)
    index = config.shard.index
    return state_dir / f"instance-{index}" if index else state_dir


def bridge_level(config: Config) -> str:
    """The topic levels of this instance's bridge topics below the base topic:
    ``bridge`` for a single instance, ``bridge/<gateway id>-<index>`` for a shard."""
    return f"bridge/{instance_name(config)}" if sharded(config) else "bridge"


def reloaded(running: Config, loaded: Config) -> tuple[Config, bool]:
    """A reloaded configuration as the running instance applies it: split with the running
    ``shard`` settings (a new split needs a restart of every instance, so that no meter is
    polled twice or cleared by the instance it left), and whether ``shard`` changed."""
    view = instance(replace(loaded, shard=running.shard, foreign_meters=None))
    return view, loaded.shard != running.shard
