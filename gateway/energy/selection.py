"""Which registers of a meter get import and export counters (``energy.registers``).

``auto``: every register of a power type that can run both ways -- real power ``P`` and
reactive power ``var`` / ``PQ`` -- except those whose name says they cannot: eGauge marks a
register that counts only positive values with a trailing ``+`` and one that counts the
magnitude with ``|`` (apparent power ``S`` never runs backwards either). A list names the
registers to count instead; of those, only types whose time integral means something
(energy, charge, volume, mass, money: :attr:`gateway.meter.TypeCode.integrable`) are counted.
"""

from __future__ import annotations

from typing import Final

from gateway.config import EnergyConfig
from gateway.meter import type_code

BOTH_WAYS: Final = ("P", "var", "PQ")
ONE_WAY_MARKS: Final = ("+", "|")


def counted(cfg: EnergyConfig, name: str, code: str) -> bool:
    """Whether the register ``name`` of type ``code`` has counters under ``cfg``."""
    if not cfg.enabled:
        return False
    if cfg.registers is not None:
        return name in cfg.registers and type_code(code).integrable
    return code in BOTH_WAYS and not name.endswith(ONE_WAY_MARKS)
