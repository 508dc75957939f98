"""eGauge register type codes: quantity, unit, quantum (egauge-webapi §2.4).

The meter stores every register as a signed 64-bit accumulation of ``round(rate/quantum)``
per second, so the physical cumulative value is ``int(raw) * quantum`` in the rate unit
times seconds (W -> W·s). For power-like codes the gateway reports energy in kWh (kVAh,
kvarh); other codes keep "unit·s". Discrete registers (``d``) store the value itself.
Unknown codes are kept as opaque numbers with quantum 1 and no unit.

Rounding for display (:func:`decimals`, :func:`rounded`): a rate carries its quantum's
decimals (W 0, V/A/Hz/°C 3, ``$`` 9) -- the meter cannot report finer; a cumulative energy
in kWh (kvarh, kVAh) is shown to the Wh (3 decimals), other cumulative values like their
rate. Unknown codes are never rounded (``decimals`` is None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TypeCode:
    """What one type code means."""

    code: str
    quantity: str
    unit: str  # unit of the rate ("" when dimensionless)
    quantum: float  # physical value of one raw count
    cumulative_unit: str  # unit of the reported cumulative value
    cumulative_factor: float  # raw count -> cumulative_unit
    known: bool = True

    def cumulative(self, raw: int) -> float:
        """The physical cumulative value of a raw int64 accumulator."""
        return raw * self.cumulative_factor

    def decimals(self, *, cumulative: bool = False) -> int | None:
        """The decimals a value of this type carries (None: unknown code, do not round)."""
        if not self.known:
            return None
        if cumulative and self.cumulative_factor != self.quantum:
            return ENERGY_DECIMALS
        return max(0, math.ceil(-math.log10(self.quantum) - 1e-9))


_HOUR_KILO = 3_600_000.0
ENERGY_DECIMALS = 3  # kWh (kvarh, kVAh) shown to the Wh


def _accum(code: str, quantity: str, unit: str, quantum: float) -> TypeCode:
    cum_unit = f"{unit}·s" if unit else "s"
    return TypeCode(code, quantity, unit, quantum, cum_unit, quantum)


def _energy(code: str, quantity: str, unit: str, cum_unit: str) -> TypeCode:
    return TypeCode(code, quantity, unit, 1.0, cum_unit, 1.0 / _HOUR_KILO)


_TABLE: dict[str, TypeCode] = {
    t.code: t
    for t in (
        TypeCode("#", "number", "", 1.0, "", 1.0),
        TypeCode("#3", "number", "", 0.001, "", 0.001),
        _accum("%", "percentage", "%", 0.001),
        _accum("$", "money", "$/s", 2.0**-29),
        _accum("a", "angle", "°", 0.001),
        _accum("aq", "air quality", "", 0.001),
        TypeCode("d", "discrete", "", 1.0, "", 1.0),
        _accum("Ee", "irradiance", "W/m²", 1.0),
        _accum("F", "frequency", "Hz", 0.001),
        _accum("h", "humidity", "%", 0.001),
        _accum("I", "current", "A", 0.001),
        _accum("m", "mass", "g", 0.001),
        _energy("P", "power", "W", "kWh"),
        _accum("Pa", "pressure", "Pa", 1.0),
        _accum("ppm", "concentration", "ppm", 0.001),
        _energy("var", "reactive power", "var", "kvarh"),
        _energy("PQ", "reactive power", "var", "kvarh"),
        _accum("Q", "mass flow", "g/s", 1.0),
        _accum("Qe", "charge", "Ah", 0.001),
        _accum("Qv", "volumetric flow", "m³/s", 1e-9),
        _accum("R", "resistance", "Ω", 1.0),
        _energy("S", "apparent power", "VA", "kVAh"),
        _accum("T", "temperature", "°C", 0.001),
        _accum("THD", "harmonic distortion", "%", 0.001),
        _accum("V", "voltage", "V", 0.001),
        _accum("v", "speed", "m/s", 0.001),
        _accum("Vdc", "voltage", "V", 0.001),
        _accum("Idc", "current", "A", 0.001),
        _accum("dT", "temperature difference", "°C", 0.001),
    )
}


def type_code(code: str) -> TypeCode:
    """The meaning of ``code``; unknown codes come back opaque (quantum 1, no unit)."""
    known = _TABLE.get(code)
    if known is not None:
        return known
    return TypeCode(code, "unknown", "", 1.0, "", 1.0, known=False)


def decimals(code: str, *, cumulative: bool = False) -> int | None:
    """How many decimals a rate (or cumulative value) of type ``code`` is shown with;
    None for an unknown code (shown as it came)."""
    return type_code(code).decimals(cumulative=cumulative)


def rounded(code: str, value: float, *, cumulative: bool = False) -> float:
    """``value`` rounded as its type code says (unknown codes and non-finite values are
    returned as they are)."""
    places = decimals(code, cumulative=cumulative)
    if places is None or not math.isfinite(value):
        return value
    return round(value, places)
