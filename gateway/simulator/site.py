"""The simulated site: one house with a sub-panel and a solar array on a split-phase service.

Everything a meter reports derives from four signals, so the values agree with each other:

- ``panel``: the sub-panel's load (230-410 W, on leg L1),
- ``rest``: the rest of the house (230-1570 W; a daily swing peaking in the evening plus
  appliance cycles of 900 s and 120 s, split over both legs),
- ``solar``: the array (a daylight bell of ``solar_peak`` W, zero from 18:00 to 06:00 of each
  ``day_s``-second day, noon at its middle; UTC),
- the line: ``L1``/``L2`` around 120 V, one grid frequency around 60 Hz.

Load (``use``) = panel + rest is never negative, generation (``gen``) never negative, and
``Grid`` = load - solar counts exactly ``use`` - ``gen`` every second, so it imports at night
and exports around noon. ``Panel A/B`` is the sub-panel read through a reversed CT (always
negative), ``Amps #1`` the current of CT ``S1``, ``Reactive`` and ``Apparent`` the load's
at a power factor of 0.95.

CT wiring behind ``/local``: ``S1`` load on L1 (sub-panel + half the rest), ``S2`` load on
L2, ``S3``/``S4`` the inverter on L1/L2 (installed reversed, so ``S3*L1`` reads negative and
``-S3*L1`` positive), ``S5`` the sub-panel on L1 (reversed). Currents are RMS at the nominal
120 V; the ``energy`` and ``apparent`` products follow the register definitions
(``/config/register/physical/*/value``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.simulator.registers import SimRegister, physical, virtual
from gateway.simulator.sensors import Product, Sensor
from gateway.simulator.signals import DayCurve, Mix, Signal, Wave

REACTIVE_CODES = ("PQ", "var")
NOMINAL_V = 120.0
_EVENING = math.pi / 2 - 2 * math.pi * 19 / 24  # the daily load swing peaks at 19:00


@dataclass(frozen=True, slots=True)
class Site:
    """The default site. ``phase`` (radians) shifts the appliance cycles and line wobble so
    the meters of a fleet do not read alike; ``day_s`` is the length of a day in seconds
    (86400; a short day, e.g. 600, makes ``Grid`` cross zero twice every ``day_s``)."""

    day_s: int = 86400
    phase: float = 0.0
    reactive_code: str = "PQ"
    solar_peak: float = 4000.0
    power_factor: float = 0.95

    def __post_init__(self) -> None:
        if self.reactive_code not in REACTIVE_CODES:
            raise ValueError(f"reactive_code must be one of {REACTIVE_CODES}, "
                             f"not {self.reactive_code!r}")
        if not isinstance(self.day_s, int) or self.day_s < 2:
            raise ValueError(f"day_s must be a whole number of seconds >= 2, not {self.day_s!r}")

    # -- the four signals --------------------------------------------------------------
    @property
    def panel(self) -> Wave:
        return Wave(320.0, 90.0, 300.0, self.phase)

    @property
    def rest(self) -> Mix:
        return Mix(((1, Wave(900.0)), (1, Wave(0.0, 300.0, self.day_s, _EVENING)),
                    (1, Wave(0.0, 250.0, 900.0, 1.3 + self.phase)),
                    (1, Wave(0.0, 120.0, 120.0, 2.1 + self.phase))))

    def solar(self, share: float = 1.0) -> DayCurve:
        return DayCurve(self.solar_peak * share, self.day_s)

    @property
    def load(self) -> Mix:
        return Mix(((1, self.panel), (1, self.rest)))

    @property
    def grid(self) -> Mix:
        return Mix(((1, self.panel), (1, self.rest), (-1, self.solar())))

    @property
    def frequency(self) -> Wave:
        return Wave(60.0, 0.03, 60.0, self.phase)

    def volts(self, leg: int) -> Wave:
        return (Wave(120.0, 1.2, 300.0, 0.5 + self.phase) if leg == 1
                else Wave(119.8, 1.0, 300.0, 2.1 + self.phase))

    def _load_leg(self, leg: int, scale: float) -> Mix:
        """The load on ``leg`` (1: sub-panel + half the rest, 2: half the rest) x scale."""
        if leg == 1:
            return Mix(((scale, self.panel), (scale / 2, self.rest)))
        return Mix(((scale / 2, self.rest),))

    def capture_phase(self, channel: str) -> float:
        """The phase (radians) of a channel's waveform in ``/capture``: L2 opposite L1,
        load currents lagging their line, the reversed CTs (S3, S4, S5) turned by 180°."""
        lag = math.acos(self.power_factor)
        return {"L1": 0.0, "L2": math.pi, "S1": -lag, "S2": math.pi - lag, "S3": math.pi,
                "S4": 0.0, "S5": math.pi - lag}.get(channel, 0.0)

    # -- what the meter reports --------------------------------------------------------
    def registers(self) -> list[SimRegister]:
        """The register set (idx != did, gaps in idx, awkward names)."""
        tan = math.tan(math.acos(self.power_factor))
        amps = 1.0 / (self.power_factor * NOMINAL_V)
        return [
            virtual("use", "P", 0, "+Grid", "+Solar+"),
            virtual("gen", "P", 1, "+Solar+"),
            physical("Grid", "P", 3, 0, self.grid, "S1*L1+S2*L2+S3*L1+S4*L2"),
            physical("Solar+", "P", 5, 1, self.solar(), "-S3*L1-S4*L2"),
            physical("Panel A/B", "P", 6, 2, Mix(((-1, self.panel),)), "S5*L1"),
            physical("Amps #1", "I", 8, 3, self._load_leg(1, amps), "S1"),
            physical("Temp Büro", "T", 9, 4, Wave(21.5, 1.5, self.day_s, -2.0), "Tpcb"),
            physical("Voltage L1", "V", 11, 5, self.volts(1), "L1"),
            physical("Frequency", "F", 12, 6, self.frequency, "L1"),
            physical("Reactive", self.reactive_code, 14, 7,
                     Mix(((tan, self.panel), (tan, self.rest))), "S1*L1+S2*L2"),
            physical("Apparent", "S", 15, 8,
                     Mix(((1 / self.power_factor, self.panel),
                          (1 / self.power_factor, self.rest))), "S1*L1+S2*L2"),
        ]

    def sensors(self) -> tuple[tuple[Sensor, ...], tuple[Product, ...]]:
        """The ``/local`` line inputs, CTs and board temperature, and the sensor products."""
        amps = 1.0 / (self.power_factor * NOMINAL_V)
        freq = self.frequency

        def line(name: str, leg: int) -> Sensor:
            return Sensor(name, "l", "V", {"n": self.volts(leg),
                                           "m": Wave(0.02, 0.01, 77.0, leg + self.phase),
                                           "f": freq})

        def ct(name: str, rms: Signal, ph: float) -> Sensor:
            return Sensor(name, "s", "I", {"n": rms, "m": Wave(0.0, 0.005, 50.0, ph), "f": freq})

        inverter = self.solar(0.5 / NOMINAL_V)
        sensors = (
            line("L1", 1), line("L2", 2),
            ct("S1", self._load_leg(1, amps), 0.0), ct("S2", self._load_leg(2, amps), 0.7),
            ct("S3", inverter, 1.4), ct("S4", inverter, 2.1),
            ct("S5", Mix(((amps, self.panel),)), 2.8),
            Sensor("Tpcb", "env", "T", {"n": Wave(38.2, 0.8, 1800.0)}),
        )
        half_solar = self.solar(0.5)
        va = 1.0 / self.power_factor
        products = (
            Product("S1*L1", "energy", self._load_leg(1, 1.0)),
            Product("S2*L2", "energy", self._load_leg(2, 1.0)),
            Product("S3*L1", "energy", Mix(((-1, half_solar),))),
            Product("S4*L2", "energy", Mix(((-1, half_solar),))),
            Product("-S3*L1", "energy", half_solar),
            Product("-S4*L2", "energy", half_solar),
            Product("S5*L1", "energy", Mix(((-1, self.panel),))),
            Product("S1*L1", "apparent", self._load_leg(1, va)),
            Product("S2*L2", "apparent", self._load_leg(2, va)),
            Product("S3*L1", "apparent", half_solar),
            Product("S4*L2", "apparent", half_solar),
        )
        return sensors, products


def default_registers(phase: float = 0.0, reactive_code: str = "PQ",
                      day_s: int = 86400) -> list[SimRegister]:
    """The default site's register set (:class:`gateway.simulator.site.Site`): ``use`` and
    ``gen`` (virtual), ``Grid``, ``Solar+``, ``Panel A/B``, ``Amps #1``, ``Temp Büro``,
    ``Voltage L1``, ``Frequency``, ``Reactive`` (typed ``reactive_code``: ``PQ`` as
    egauge-python's table reads it, or the spec's ``var``) and ``Apparent``."""
    return Site(day_s=day_s, phase=phase, reactive_code=reactive_code).registers()
