"""Test-side helpers for the energy counters (no tests here): a simulated meter with a register
that crosses zero, the counters as the state JSON publishes them (back in the meter's raw
counts), and what they must be, from the simulator's own per-second changes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.simulator import SimMeter, Wave

SWING = "Swing"  # crosses zero every SWING_S seconds
SWING_SLUG = "swing"
SWING_S = 5
KWH = 3_600_000  # W·s (raw counts of a power register) in one kWh


def swinging_meter(serial: str, **kw: Any) -> SimMeter:
    """The simulator's site plus ``Swing``: a power register whose rate changes sign every
    SWING_S seconds (so it both imports and exports within a few seconds)."""
    meter = SimMeter(serial, **kw)
    meter.add_register(SWING, "P", Wave(0.0, 1500.0, 2 * SWING_S))
    return meter


@dataclass(frozen=True)
class Sample:
    """One register's counters as one state message carried them, in raw counts."""

    through: int
    imported: int
    exported: int


def samples(states: Iterable[bytes | dict[str, Any]], slug: str) -> list[Sample]:
    """The counters of ``slug`` in these state payloads (oldest first), where present."""
    out = []
    for state in states:
        data = json.loads(state) if isinstance(state, bytes) else state
        entry = data["registers"].get(slug)
        if entry is None or "import" not in entry:
            continue
        out.append(Sample(entry["energy_through"], round(entry["import"] * KWH),
                          round(entry["export"] * KWH)))
    return out


def expected(meter: SimMeter, name: str, after: int, through: int,
             skip: Sequence[int] = ()) -> tuple[int, int]:
    """The sums of the positive and of the negative per-second changes the simulator
    produced for the seconds ``after + 1 .. through`` (but ``skip``)."""
    changes = meter.raw_changes(name, after, through)
    kept = [c for t, c in zip(range(after + 1, through + 1), changes, strict=True)
            if t not in skip]
    return sum(c for c in kept if c > 0), -sum(c for c in kept if c < 0)


def gained(first: Sample, last: Sample) -> tuple[int, int]:
    return last.imported - first.imported, last.exported - first.exported


def never_decrease(series: Sequence[Sample]) -> bool:
    return all(b.imported >= a.imported and b.exported >= a.exported and b.through >= a.through
               for a, b in itertools.pairwise(series))
