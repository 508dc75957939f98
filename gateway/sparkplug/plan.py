"""What one meter's DBIRTH will declare, for ``egauge-gateway plan``: every metric's name,
alias, datatype and properties, from the pinned alias book, without pinning or writing
anything (a metric not pinned yet is listed with ``alias: None`` and the name it would get)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.config import Config, MeterConfig, shard
from gateway.energy import counted
from gateway.model import RegisterInfo
from gateway.sparkplug import metrics as m
from gateway.sparkplug.aliases import FILE_NAME, AliasBook
from gateway.sparkplug.device import SlugOf
from gateway.sparkplug.topics import SparkplugTopics


def book_of(config: Config) -> AliasBook:
    """The instance's alias book as the running Edge Node would load it."""
    book = AliasBook(shard.instance_dir(config) / "sparkplug" / FILE_NAME)
    book.load()
    return book


def topics_of(config: Config) -> SparkplugTopics:
    cfg = config.sparkplug
    return SparkplugTopics(cfg.group_id,
                           shard.suffixed(config, cfg.edge_node_id or config.gateway.id))


def planned_metrics(book: AliasBook, meter: MeterConfig, registers: Sequence[RegisterInfo],
                    slug_of: SlugOf) -> tuple[dict[str, Any], ...]:
    """The DBIRTH metrics of ``meter`` with ``registers``, in birth order."""
    defs: list[m.MetricDef] = []
    for reg in registers:
        slug = book.pinned_slug(meter.id, reg.name) or book.proposed_slug(
            meter.id, reg.name, slug_of(meter.id, reg.name))
        defs.extend(rm.definition for rm in m.register_metrics(
            slug, reg.name, reg.type_code, counted(meter.energy, reg.name, reg.type_code)))
    defs.extend(m.device_metrics(m.Writable.of(meter.commands)))
    return tuple({"name": d.name, "alias": book.pinned_alias(meter.id, d.name),
                  "datatype": d.datatype.name.title(),
                  "properties": {p.key: p.value for p in d.properties}} for d in defs)
