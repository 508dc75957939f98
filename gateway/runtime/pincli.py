"""``egauge-gateway pins list|release``: the pinned identities in ``gateway.state_dir``.

``list -c FILE [--meter ID] [--json]`` shows, per meter, every name ever pinned: its slug (and
the register's type code, idx and did when last seen, and whether it was on the meter then)
and its Modbus slot and first address (the slots of energy counters under their names,
``"Grid import"``), and the slugs pinned for entities of their own (counters, diagnostics).
Meters that are no longer configured but still have pin files are listed too. Nothing is
contacted.

``release -c FILE --meter ID [--only slug|modbus] [--force] NAME...`` forgets pins on purpose.
It refuses (exit 1) while a gateway serves the meter (the pins' lock is held: it would write
them back), when a name has no pin, and -- unless ``--force`` -- while a name is still on the
meter (it reads the meter's register list; an unreachable meter exits 3 without ``--force``).
What a release does to topics, Home Assistant and Modbus is in docs/OPERATIONS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.config import Config
from gateway.errors import (
    EXIT_OK,
    EXIT_STARTUP,
    ConfigError,
    MeterError,
)
from gateway.meter import WebApiClient
from gateway.modbus import Pins, load_mapping
from gateway.modbus import PinStore as ModbusPins
from gateway.mqtt import SLUG_KIND, MeterSlugs
from gateway.runtime.offline import offline
from gateway.runtime.plantext import table
from gateway.support import PinLock, PinStore

EXIT_REFUSED: Final = 1
KINDS: Final = ("slug", "modbus")


@dataclass
class MeterPins:
    meter: str
    configured: bool
    slugs: MeterSlugs
    modbus: Pins
    slot_start: int | None = None  # the auto block of the meter's map: address of slot k
    slot_stride: int | None = None

    def address(self, slot: int) -> int | None:
        if self.slot_start is None or self.slot_stride is None:
            return None
        return self.slot_start + slot * self.slot_stride

    def names(self) -> list[str]:
        return list(dict.fromkeys([n for n, _ in self.slugs.items()]
                                  + [n for n, _ in self.modbus.items()]))


def main(args: argparse.Namespace) -> int:
    def command(config: Config) -> int:
        if args.action == "list":
            return list_pins(config, args.meter, args.json)
        return release(config, args.meter, args.names, set(args.only or KINDS), args.force)
    return offline(args.config, command)


def load(config: Config, meter: str) -> MeterPins:
    state_dir = config.gateway.state_dir
    files = PinStore(state_dir, SLUG_KIND)
    slugs = MeterSlugs.from_file(files.load(meter), str(files.path(meter)))
    pins = MeterPins(meter, False, slugs, ModbusPins(state_dir).load(meter))
    try:
        cfg = config.meter(meter)
    except KeyError:
        return pins
    pins.configured = True
    try:
        auto = load_mapping(cfg.modbus_mapping or config.modbus.mapping).auto
    except ConfigError:
        auto = None  # check-config reports the map; the slots are listed without addresses
    if auto is not None:
        pins.slot_start, pins.slot_stride = auto.start, auto.stride
    return pins


def known_meters(config: Config) -> list[str]:
    state_dir = config.gateway.state_dir
    found = set(PinStore(state_dir, SLUG_KIND).meters()) | set(ModbusPins(state_dir).meters())
    configured = [m.id for m in config.meters]
    return configured + sorted(found - set(configured))


def rows(pins: MeterPins) -> list[dict[str, Any]]:
    out = []
    for name in pins.names():
        s, m = pins.slugs.get(name), pins.modbus.get(name)
        out.append({
            "name": name, "slug": s.slug if s else None,
            "type": (s.type_code if s else "") or (m.type_code if m else ""),
            "idx": s.idx if s else None, "did": s.did if s else None,
            "present": s.present if s else None,
            "modbus_slot": m.slot if m else None,
            "modbus_address": pins.address(m.slot) if m else None,
        })
    return out


def list_pins(config: Config, meter: str | None, as_json: bool) -> int:
    meters = [meter] if meter is not None else known_meters(config)
    loaded = [load(config, m) for m in meters]
    if as_json:
        data = {"meters": [{"meter": p.meter, "configured": p.configured,
                            "identity": p.slugs.identity or None, "pins": rows(p),
                            "entities": p.slugs.entities}
                           for p in loaded]}
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    lines = []
    for p in loaded:
        note = "" if p.configured else " (not configured)"
        serial = f", serial {p.slugs.identity['serial']}" if "serial" in p.slugs.identity else ""
        lines.append(f"meter {p.meter}{note}{serial}: {len(p.names())} names pinned")
        lines += table([("name", "slug", "type", "idx", "did", "on meter", "modbus slot",
                         "address")] + [
            (repr(r["name"]), r["slug"] or "-", r["type"] or "-", _dash(r["idx"]),
             _dash(r["did"]), {True: "yes", False: "no", None: "-"}[r["present"]],
             _dash(r["modbus_slot"]), _dash(r["modbus_address"])) for r in rows(p)])
        entities = p.slugs.entities
        if entities:
            lines.append("  entity slugs: " + ", ".join(f"{k} -> {v}"
                                                        for k, v in entities.items()))
        lines.append("")
    sys.stdout.write("\n".join(lines).rstrip("\n") + "\n")
    return EXIT_OK


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def release(config: Config, meter: str, names: Sequence[str], kinds: set[str],
            force: bool) -> int:
    if meter not in known_meters(config):
        known = ", ".join(known_meters(config)) or "none"
        raise ConfigError([f"--meter: no meter {meter!r} (meters with pins or configured: "
                           f"{known})"], config.source)
    lock = PinLock(config.gateway.state_dir, meter)
    if not lock.take():
        print(f"pins release: a running gateway serves meter {meter!r} ({lock.path} is "
              "locked); stop it (or remove the meter from its configuration and reload) first",
              file=sys.stderr)
        return EXIT_REFUSED
    try:
        return _release(config, meter, names, kinds, force)
    finally:
        lock.release()


def _release(config: Config, meter: str, names: Sequence[str], kinds: set[str],
             force: bool) -> int:
    pins = load(config, meter)
    unknown = [n for n in names if not (("slug" in kinds and n in pins.slugs)
                                        or ("modbus" in kinds and n in pins.modbus))]
    if unknown:
        print(f"pins release: no {'/'.join(sorted(kinds))} pin for "
              f"{', '.join(map(repr, unknown))} on meter {meter!r}", file=sys.stderr)
        return EXIT_REFUSED
    if not force and pins.configured:
        try:
            on_meter = asyncio.run(meter_names(config, meter))
        except MeterError as exc:
            print(f"pins release: cannot tell whether the names are on meter {meter!r} "
                  f"({exc.message}); use --force to release them anyway", file=sys.stderr)
            return EXIT_STARTUP
        still = [n for n in names if n in on_meter]
        if still:
            print(f"pins release: {', '.join(map(repr, still))} still on meter {meter!r} "
                  "(released, a name gets its slug and address afresh at the next start, "
                  "perhaps other ones); use --force to release anyway", file=sys.stderr)
            return EXIT_REFUSED
    state_dir = config.gateway.state_dir
    touched: set[str] = set()
    for name in names:
        gone = []
        if "slug" in kinds and (s := pins.slugs.release(name)) is not None:
            gone.append(f"slug {s.slug}")
            touched.add("slug")
        if "modbus" in kinds and (m := pins.modbus.release(name)) is not None:
            touched.add("modbus")
            where = pins.address(m.slot)
            gone.append(f"Modbus slot {m.slot}" + (f" (address {where})" if where is not None
                                                    else ""))
        print(f"released {name!r} of meter {meter!r}: {', '.join(gone)}")
    if "slug" in touched:
        PinStore(state_dir, SLUG_KIND).save(pins.slugs.to_file())
    if "modbus" in touched:
        ModbusPins(state_dir).save(pins.modbus)
    return EXIT_OK


async def meter_names(config: Config, meter: str) -> set[str]:
    """Every register name the meter has now (not only the polled ones)."""
    cfg = config.meter(meter)
    try:
        async with WebApiClient.from_config(cfg) as client, asyncio.timeout(cfg.timeout_s * 6):
            return {r.name for r in await client.register_info()}
    except TimeoutError as exc:
        raise MeterError(meter, "no answer in time") from exc
