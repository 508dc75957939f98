"""``egauge-gateway plan -c FILE [--meter ID] [--json] [--diff]``: what the configuration
creates, per meter (:mod:`gateway.runtime.plan` builds it; this module reads the meters,
renders and chooses the exit code).

Each meter is read as its poller reads it (login, ``/sys``, ``/register``); a meter that
cannot be read within a few of its timeouts is planned from its pins, and the output says
so. Nothing is written: neither pins nor anything on a broker or a meter.

Exit codes: 0; with ``--diff`` 1 when any meter differs from its pins (names never pinned,
pinned names gone, renames, retypes, pinned addresses the map now covers), else 3 when a
meter could not be read (there is nothing to compare with), else 0. 78: the configuration, a
mapping file or a Modbus pin file is invalid; 3: a slug pin file is damaged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any, Final

from gateway.config import Config, MeterConfig
from gateway.core import registers_of
from gateway.errors import (
    EXIT_OK,
    EXIT_STARTUP,
    ConfigError,
    MeterError,
)
from gateway.meter import WebApiClient
from gateway.modbus import PinStore as ModbusPins
from gateway.mqtt import SLUG_KIND, MeterSlugs
from gateway.runtime.offline import offline
from gateway.runtime.plan import (
    InstanceReport,
    MeterReport,
    MeterSource,
    entity_conflicts,
    from_pins,
    plan_instance,
    plan_meter,
)
from gateway.runtime.plantext import diff_text, plan_text
from gateway.support import PinStore

EXIT_CHANGES: Final = 1  # plan --diff: something differs from the pins
PARALLEL: Final = 16  # meters read at a time
READ_TIMEOUTS: Final = 6  # a meter's reading may take this many of its timeout_s


def main(args: argparse.Namespace) -> int:
    return offline(args.config, lambda config: report(args, config))


def report(args: argparse.Namespace, config: Config) -> int:
    reports = asyncio.run(plan_all(config, selected(config, args.meter)))
    instances = [plan_instance(config, i) for i in sorted({r.instance for r in reports})]
    if args.json:
        data = diff_json(reports) if args.diff else plan_json(config, instances, reports)
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(diff_text(reports) if args.diff else plan_text(config, instances,
                                                                        reports))
    if not args.diff:
        return EXIT_OK
    if any(r.changes.any for r in reports if r.source.live):
        return EXIT_CHANGES
    return EXIT_STARTUP if any(not r.source.live for r in reports) else EXIT_OK


def selected(config: Config, meter_id: str | None) -> list[MeterConfig]:
    if meter_id is None:
        return list(config.meters)
    try:
        return [config.meter(meter_id)]
    except KeyError:
        known = ", ".join(m.id for m in config.meters)
        raise ConfigError([f"--meter: no meter {meter_id!r} (meters: {known})"],
                          config.source) from None


async def plan_all(config: Config, meters: Sequence[MeterConfig]) -> list[MeterReport]:
    """Read every meter (at most :data:`PARALLEL` at a time) and plan it."""
    state_dir = config.gateway.state_dir
    slug_files, modbus_pins = PinStore(state_dir, SLUG_KIND), ModbusPins(state_dir)
    gate = asyncio.Semaphore(PARALLEL)
    pins = {m.id: MeterSlugs.from_file(slug_files.load(m.id), str(slug_files.path(m.id)))
            for m in meters}

    async def one(meter: MeterConfig) -> MeterSource:
        async with gate:
            try:
                return await read_meter(meter)
            except MeterError as exc:
                reason = f"meter unreachable: {exc.message}"
            except TimeoutError:
                reason = (f"meter unreachable: no answer within "
                          f"{meter.timeout_s * READ_TIMEOUTS:g} s")
        return from_pins(meter, pins[meter.id], modbus_pins, reason)

    sources = await asyncio.gather(*(one(m) for m in meters))
    return [plan_meter(config, source, pins[source.meter.id]) for source in sources]


async def read_meter(meter: MeterConfig) -> MeterSource:
    """Identity and register set as the meter's poller reads them."""
    async with WebApiClient.from_config(meter) as client, \
            asyncio.timeout(meter.timeout_s * READ_TIMEOUTS):
        identity = await client.identity()
        reading = await client.read(meter.registers)
        infos = await client.register_info()
    return MeterSource(meter, True, meter.url, identity, registers_of(reading, infos))


# -- JSON -------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(
        value, type) else value


def source_json(report: MeterReport) -> dict[str, Any]:
    source = report.source
    return {"from": "meter" if source.live else "pins", "detail": source.detail}


def changes_json(report: MeterReport) -> dict[str, Any]:
    c = report.changes
    by_name = {r.name: r for r in report.registers}
    return {
        "first_run": c.first_run,
        "new": [{"name": n, "slug": report.slugs.get(n), "modbus_address":
                 by_name[n].slot_address if n in by_name else None} for n in c.new],
        "gone": list(c.gone),
        "changed": [{"old_name": x.old_name, "new_name": x.new_name, "old_type": x.old_type,
                     "new_type": x.new_type} for x in c.changed],
        "modbus_new": list(c.modbus_new),
        "modbus_dropped": list(c.modbus_dropped),
        "any": c.any,
    }


def meter_json(report: MeterReport) -> dict[str, Any]:
    ident = report.source.identity
    return {
        "meter": report.meter,
        "instance": report.instance,
        "source": source_json(report),
        "identity": _plain(ident) if ident is not None else None,
        "registers": [_plain(r) for r in report.registers],
        "mqtt": {"topics": [_plain(t) for t in report.topics]} if report.topics else None,
        "homeassistant": [_plain(e) for e in report.entities] if report.entities else None,
        "modbus": _plain(report.modbus) if report.modbus is not None else None,
        "history_topic": report.history_topic,
        "sparkplug": report.sparkplug,  # DBIRTH metrics and aliases (None: Sparkplug off)
        "changes": changes_json(report),
    }


def plan_json(config: Config, instances: Sequence[InstanceReport],
              reports: Sequence[MeterReport]) -> dict[str, Any]:
    return {
        "gateway": config.gateway.id,
        "config": config.source,
        "instances": [_plain(i) for i in instances],
        "meters": [meter_json(r) for r in reports],
        "entity_conflicts": entity_conflicts(reports),
    }


def diff_json(reports: Sequence[MeterReport]) -> dict[str, Any]:
    """The differences of the meters that could be read (``changes`` null for the others)."""
    return {"meters": [{"meter": r.meter, "source": source_json(r),
                        "changes": changes_json(r) if r.source.live else None}
                       for r in reports],
            "changes": any(r.changes.any for r in reports if r.source.live)}
