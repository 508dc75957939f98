"""The import/export counters of every meter (docs/ENERGY.md): exact integers in the meter's
raw units, built from each second's change of a register's cumulative value, filled from the
meter's own database after any gap, never going backwards.

Modules: ``counter`` (one register's counters and the rule for a step), ``selection`` (which
registers are counted), ``tally`` (one meter's counters and their gap filling), ``store``
(``energy.json``), ``service`` (the hub stage, sink and service that owns them all)."""

from gateway.energy.counter import FLOOR, MARGIN, Counter, Step, change, limit, split
from gateway.energy.selection import counted
from gateway.energy.service import PERSIST_S, Energy, persist_interval
from gateway.energy.store import STATE_FILE
from gateway.energy.tally import EnergyLane, EnergySource, MeterTally, TallyStats

__all__ = ["FLOOR", "MARGIN", "PERSIST_S", "STATE_FILE", "Counter", "Energy", "EnergyLane",
           "EnergySource", "MeterTally", "Step", "TallyStats", "change", "counted", "limit",
           "persist_interval", "split"]
