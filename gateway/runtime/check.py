"""``egauge-gateway check-config -c FILE``: the configuration, and the Modbus mapping files it
names, checked as ``run`` would load them.

Prints ``ok: N meters (ids)`` and exits 0, or prints every problem to stderr, one line each,
and exits 78: first the configuration's own problems (then nothing else is checked), else the
problems of each mapping file that cannot be loaded, as ``<mapping>: <problem>``, the same
lines ``run`` would refuse the file with. Mapping files are only checked while ``modbus`` is
enabled, as only then does ``run`` load them.
"""

from __future__ import annotations

import argparse
import sys

from gateway.config import Config, load_or_report
from gateway.errors import EXIT_CONFIG, EXIT_OK, ConfigError
from gateway.modbus import load_mapping


def mapping_problems(config: Config) -> list[str]:
    """Every problem of every mapping file the configuration uses (none: all load)."""
    if not config.modbus.enabled:
        return []
    problems: list[str] = []
    for spec in dict.fromkeys(m.modbus_mapping or config.modbus.mapping for m in config.meters):
        try:
            load_mapping(spec)
        except ConfigError as exc:
            problems.extend(line if line.startswith(spec) else f"{spec}: {line}"
                            for line in exc.problems)
    return problems


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    problems = mapping_problems(config)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    ids = ", ".join(m.id for m in config.meters)
    print(f"ok: {len(config.meters)} meter{'s' if len(config.meters) != 1 else ''} ({ids})")
    return EXIT_OK
