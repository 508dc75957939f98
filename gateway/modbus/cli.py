"""``egauge-gateway map export|generate``: print a unit's map as CSV, or draft a map file.

``export`` shows the map the gateway serves for one meter: its mapping file plus the slots
already pinned in ``state_dir`` (no meter is contacted). ``generate`` logs in to the meter,
reads its register list and writes an editable mapping file with every register at the address
the gateway gives it (slots already pinned keep theirs; new names follow in the meter's order),
followed by the map's writable points (coils, command register).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Iterable
from typing import Final

from gateway.config import Config, MeterConfig, load_config
from gateway.errors import EXIT_CONFIG, EXIT_OK, EXIT_STARTUP, ConfigError, MeterError
from gateway.meter import WebApiClient
from gateway.modbus.layout import Layout, export_csv, pin_new, polled_names, with_counters
from gateway.modbus.loader import load_mapping
from gateway.modbus.mapping import Point, RegisterMap
from gateway.modbus.pins import PinStore

_PLAIN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_ .()/+-]*")
_YAML_WORDS: Final = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null"})


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        meter = _meter(config, args.meter)
        if args.action == "export":
            text = export_text(config, meter)
        else:
            text = asyncio.run(generate_text(config, meter))
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except MeterError as exc:
        print(f"map generate: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    if args.output in ("-", None):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return EXIT_OK


def _meter(config: Config, meter_id: str | None) -> MeterConfig:
    if not config.meters:
        raise ConfigError(["meters: no meter configured"], config.source)
    if meter_id is None:
        return config.meters[0]
    try:
        return config.meter(meter_id)
    except KeyError:
        known = ", ".join(m.id for m in config.meters)
        raise ConfigError([f"--meter: no meter {meter_id!r} (meters: {known})"],
                          config.source) from None


def export_text(config: Config, meter: MeterConfig) -> str:
    """The CSV of ``map export``."""
    rmap = load_mapping(meter.modbus_mapping)
    pins = PinStore(config.gateway.state_dir).load(meter.id)
    return export_csv(Layout.build(rmap, pins), {n: p.type_code for n, p in pins.items()})


async def generate_text(config: Config, meter: MeterConfig) -> str:
    """The mapping file of ``map generate`` (reads the meter's register list)."""
    async with WebApiClient.from_config(meter) as client:
        registers = await client.register_info()
    rmap = load_mapping(meter.modbus_mapping)
    if rmap.auto is None:
        rmap = load_mapping("default")
    pins = PinStore(config.gateway.state_dir).load(meter.id)
    pin_new(rmap, pins, with_counters(polled_names(registers, None), pins, meter.energy)[0])
    layout = Layout.build(rmap, pins)
    present = {r.name for r in registers}
    header = (f"# Register map drafted by `egauge-gateway map generate` for meter {meter.id!r}\n"
              f"# ({meter.url}). Edit freely, then set `modbus_mapping: <this file>`.\n")
    return header + render(layout.points, f"map of meter {meter.id}", present) + render_writes(rmap)


def render(points: Iterable[Point], description: str, present: set[str] | None = None) -> str:
    """A mapping file listing ``points`` (block YAML, strings quoted where YAML needs it)."""
    lines = [f"description: {_scalar(description)}", "registers:"]
    for p in points:
        if present is not None and p.register and p.register not in present:
            lines.append(f"  # register {p.register!r} is no longer on the meter")
        lines.append(f"  - address: {p.address}")
        lines.append(f"    name: {_scalar(p.name)}")
        if p.register is not None and p.register != p.name:
            lines.append(f"    register: {_scalar(p.register)}")
        lines.append(f"    source: {p.source}")
        lines.append(f"    type: {p.type}")
        if p.length:
            lines.append(f"    length: {p.length}")
        if p.scale != 1.0:
            lines.append(f"    scale: {p.scale:g}")
        if p.word_order != "ABCD":
            lines.append(f"    word_order: {p.word_order}")
        if p.unit:
            lines.append(f"    unit: {_scalar(p.unit)}")
        if p.value is not None:
            lines.append(f"    value: {_scalar(p.value)}")
        if p.description:
            lines.append(f"    description: {_scalar(p.description)}")
    return "\n".join(lines) + "\n"


def render_writes(rmap: RegisterMap) -> str:
    """The ``coils`` and ``command`` entries of ``rmap`` as mapping file lines."""
    lines = ["coils:"] if rmap.coils else []
    for c in rmap.coils:
        lines += [f"  - address: {c.address}", f"    name: {_scalar(c.name)}",
                  f"    relay: {c.relay}"]
        if c.device:
            lines.append(f"    device: {json.dumps(dict(c.device))}")
        if c.description:
            lines.append(f"    description: {_scalar(c.description)}")
    command = rmap.command
    if command is not None:
        lines += ["command:", f"  address: {command.address}", f"  name: {_scalar(command.name)}"]
        if command.description:
            lines.append(f"  description: {_scalar(command.description)}")
        lines.append("  codes:")
        for code, entry in sorted(command.codes.items()):
            what = (_scalar(entry.action) if not entry.fields
                    else json.dumps({"action": entry.action, **entry.fields}))
            lines.append(f"    {code}: {what}")
    return "".join(line + "\n" for line in lines)


def _scalar(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str):
        return json.dumps(value)
    if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS and value == value.strip():
        return value
    return json.dumps(value, ensure_ascii=False)
