"""eGauge register type codes: quantity, unit, quantum (egauge-webapi §2.4).

The meter stores every register as a signed 64-bit accumulation of ``round(rate/quantum)``
per second, so the physical cumulative value is ``int(raw) * quantum`` in the rate unit
times seconds (W -> W·s). For power-like codes the gateway reports energy in kWh (kVAh,
kvarh); other codes keep "unit·s". Discrete registers (``d``) store the value itself.
Unknown codes are kept as opaque numbers with quantum 1 and no unit.

Published numbers carry the digits the quantum supports and no more (:func:`quantized`): a
rate in W none, a rate in V three (quantum 0.001), an energy in kWh seven (one W·s is
0.000000278 kWh). ``integrable`` says whether the time integral of a code means something
(energy, charge, volume, mass, money, insolation): only those show a total.
For display (:func:`decimals`, :func:`rounded`; the status page) a cumulative energy in kWh
(kvarh, kVAh) is shown to the Wh (3 decimals); every other value as it is published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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
    integrable: bool = False  # the time integral means something (energy, volume, ...)
    # decimals a rate / a cumulative value (kWh, V·s, ...) of this code has (None: an
    # unknown code, not rounded); derived from the quanta once, as every published value
    # of every poll is rounded with them
    rate_digits: int | None = field(init=False, compare=False, repr=False)
    cumulative_digits: int | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        known = self.known
        object.__setattr__(self, "rate_digits", _digits(self.quantum) if known else None)
        object.__setattr__(self, "cumulative_digits",
                           _digits(self.cumulative_factor) if known else None)

    def cumulative(self, raw: int) -> float:
        """The physical cumulative value of a raw int64 accumulator."""
        return raw * self.cumulative_factor

    def decimals(self, *, cumulative: bool = False) -> int | None:
        """The decimals a value of this type is shown with (None: unknown code, do not
        round): as published, but energies (kWh) to the Wh."""
        if not cumulative:
            return self.rate_digits
        digits = self.cumulative_digits
        if digits is not None and self.cumulative_factor != self.quantum:
            return min(digits, ENERGY_DECIMALS)
        return digits


def _digits(quantum: float) -> int:
    """The decimals that tell one quantum from the next: 0 for 1, 3 for 0.001, 7 for
    1/3 600 000."""
    if quantum >= 1.0:
        return 0
    return math.ceil(-math.log10(quantum) - 1e-9)


_HOUR_KILO = 3_600_000.0
ENERGY_DECIMALS = 3  # kWh (kvarh, kVAh) shown to the Wh


def _accum(code: str, quantity: str, unit: str, quantum: float,
           integrable: bool = False) -> TypeCode:
    cum_unit = f"{unit}·s" if unit else "s"
    return TypeCode(code, quantity, unit, quantum, cum_unit, quantum, integrable=integrable)


def _energy(code: str, quantity: str, unit: str, cum_unit: str) -> TypeCode:
    return TypeCode(code, quantity, unit, 1.0, cum_unit, 1.0 / _HOUR_KILO, integrable=True)


_TABLE: dict[str, TypeCode] = {
    t.code: t
    for t in (
        TypeCode("#", "number", "", 1.0, "", 1.0),
        TypeCode("#3", "number", "", 0.001, "", 0.001),
        _accum("%", "percentage", "%", 0.001),
        _accum("$", "money", "$/s", 2.0**-29, True),
        _accum("a", "angle", "°", 0.001),
        _accum("aq", "air quality", "", 0.001),
        TypeCode("d", "discrete", "", 1.0, "", 1.0),
        _accum("Ee", "irradiance", "W/m²", 1.0, True),
        _accum("F", "frequency", "Hz", 0.001),
        _accum("h", "humidity", "%", 0.001),
        _accum("I", "current", "A", 0.001),
        _accum("m", "mass", "g", 0.001),
        _energy("P", "power", "W", "kWh"),
        _accum("Pa", "pressure", "Pa", 1.0),
        _accum("ppm", "concentration", "ppm", 0.001),
        _energy("var", "reactive power", "var", "kvarh"),
        _energy("PQ", "reactive power", "var", "kvarh"),
        _accum("Q", "mass flow", "g/s", 1.0, True),
        _accum("Qe", "charge", "Ah", 0.001),
        _accum("Qv", "volumetric flow", "m³/s", 1e-9, True),
        _accum("R", "resistance", "Ω", 1.0),
        _energy("S", "apparent power", "VA", "kVAh"),
        _accum("T", "temperature", "°C", 0.001),
        _accum("THD", "harmonic distortion", "%", 0.001),
        _accum("V", "voltage", "V", 0.001),
        _accum("v", "speed", "m/s", 0.001, True),
        _accum("Vdc", "voltage", "V", 0.001),
        _accum("Idc", "current", "A", 0.001, True),
        _accum("dT", "temperature difference", "°C", 0.001),
    )
}


def quantized(code: str, value: float | None, *, cumulative: bool = False
              ) -> float | int | None:
    """``value`` (a rate, or with ``cumulative`` a cumulative value) of a register of type
    ``code`` rounded to the decimals its quantum supports, without float noise: an ``int``
    where the quantum is whole, else the shortest float with those decimals. Unknown codes,
    None, NaN and infinities come back as they are."""
    tc = _TABLE.get(code)
    if tc is None:
        return value
    return to_digits(value, tc.cumulative_digits if cumulative else tc.rate_digits)


def to_digits(value: float | None, digits: int | None) -> float | int | None:
    """``value`` rounded to ``digits`` decimals (:func:`quantized` with the digits looked
    up): an ``int`` for 0; None (an unknown code), None, NaN and infinities: as it is."""
    if digits is None or value is None or value - value != 0.0:  # inf - inf, nan - nan: nan
        return value
    return round(value) if digits == 0 else round(value, digits)


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
