"""The counters on disk: ``<state_dir>/energy.json`` (``<state_dir>/instance-<i>/`` for the
other instances of a sharded fleet), written atomically::

    {"version": 1, "meters": {"main": {"epoch": "1675276020", "broken": [],
      "registers": {"Grid": {"type": "P", "through": 1700000000, "raw": 150555067851,
                              "import": 4123456789, "export": 1234567, "peak": 8120}}}}}

``through`` is the last meter second counted, ``raw`` the register's raw value at it,
``import`` and ``export`` the counters in raw counts (W·s for power), ``peak`` the largest rate
seen (raw counts per second, for the plausibility rule), ``broken`` the registers whose next
step is a known discontinuity. A file that cannot be read or checked stops the start (exit 3):
counting on from zero would make every counter go backwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from gateway.energy.counter import Counter
from gateway.energy.tally import MeterTally
from gateway.errors import StateFileError
from gateway.support import dumps, write_text

STATE_FILE: Final = "energy.json"
VERSION: Final = 1
Entry = dict[str, Any]


def render(tallies: Iterable[MeterTally], kept: Mapping[str, Entry]) -> str:
    """The file's text for these meters' counters and those of meters not served now."""
    meters: dict[str, Entry] = dict(kept)
    for tally in tallies:
        meters[tally.meter] = entry_of(tally)
    return dumps({"version": VERSION, "meters": meters}, compact=True)  # written every second


def entry_of(tally: MeterTally) -> Entry:
    return {
        "epoch": tally.epoch,
        "broken": sorted(tally.broken),
        "registers": {
            name: {"type": tally.types.get(name, ""), "through": c.through, "raw": c.raw,
                   "import": c.imported, "export": c.exported, "peak": c.peak}
            for name, c in tally.counters.items()
        },
    }


def restore(tally: MeterTally, entry: Entry) -> None:
    """Put a checked entry's counters into ``tally``."""
    tally.epoch = entry["epoch"]
    tally.broken = set(entry["broken"])
    for name, fields in entry["registers"].items():
        tally.counters[name] = Counter(fields["through"], fields["raw"], fields["import"],
                                       fields["export"], fields["peak"])
        tally.types[name] = fields["type"]


def write(path: Path, text: str) -> None:
    """Write atomically (OSError when it cannot)."""
    write_text(path, text)


def load(path: Path) -> dict[str, Entry]:
    """The checked entries per meter (no file: none); :class:`StateFileError` otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(str(path), f"cannot read the energy counters: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateFileError(str(path), f"not a valid energy file (not JSON: {exc})") from exc
    if not isinstance(data, dict) or data.get("version") != VERSION \
            or not isinstance(data.get("meters"), dict):
        raise StateFileError(str(path), "not a valid energy file (expected version 1 with "
                                        "a meters object)")
    return {str(meter): _checked(path, str(meter), entry)
            for meter, entry in data["meters"].items()}


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked(path: Path, meter: str, entry: object) -> Entry:
    def bad(what: str) -> StateFileError:
        return StateFileError(str(path), f"not a valid energy file (meter {meter!r}: {what}; "
                                         "remove the file to count from zero again)")

    if not isinstance(entry, dict) or not isinstance(entry.get("registers"), dict):
        raise bad("expected an object with registers")
    epoch, broken = entry.get("epoch"), entry.get("broken", [])
    if epoch is not None and not isinstance(epoch, str):
        raise bad("epoch must be a string or null")
    if not isinstance(broken, list) or not all(isinstance(b, str) for b in broken):
        raise bad("broken must be a list of register names")
    registers: dict[str, Entry] = {}
    for name, fields in entry["registers"].items():
        if not isinstance(fields, dict) or not isinstance(fields.get("type", ""), str) \
                or not all(_int(fields.get(k)) for k in ("through", "raw", "import", "export")) \
                or not _int(fields.get("peak", 0)):
            raise bad(f"register {name!r} needs integer through, raw, import and export")
        if fields["import"] < 0 or fields["export"] < 0:
            raise bad(f"register {name!r} has a negative counter")
        registers[str(name)] = {"type": fields.get("type", ""), "through": fields["through"],
                                "raw": fields["raw"], "import": fields["import"],
                                "export": fields["export"], "peak": fields.get("peak", 0)}
    return {"epoch": epoch, "broken": list(broken), "registers": registers}


def newest(entries: Iterable[Entry]) -> Entry | None:
    """Of several entries of one meter (files of other shard instances), the one that
    counted furthest."""
    def reach(entry: Entry) -> int:
        return max((r["through"] for r in entry["registers"].values()), default=-1)

    return max(entries, key=reach, default=None)
