"""``GET /api/local``: the meter's own sensors (egauge-webapi §3).

Line inputs ``L1`` and ``L2`` (V), CT inputs ``S1``..``S4`` (A) and the board temperature
``Tpcb``; ``energy`` and ``apparent`` products of sensor pairs. Rates are the value
functions at the whole second of the reply; cumulative values are their integrals since the
database was created, quantized like registers and sent as decimal strings.
Sensor selection: when none of ``env``/``l``/``s`` is given every sensor is listed;
otherwise only the groups given, each a comma list (``ALL``, names, ranges like ``S1:S3``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.simulator.registers import quantum
from gateway.simulator.reply import QueryError
from gateway.simulator.wave import Wave

SECTIONS = ("values", "energy", "apparent", "stats")
METRICS = ("rate", "cumul", "type")
MEASUREMENTS = {"normal": "n", "mean": "m", "freq": "f"}
STATS = ("dt_overflow", "upos_overflow", "zc_overflow", "dt2_overflow",
         "dt2_out_of_10percent_bounds", "ring_buffer_overflows", "dma_late", "intgr_overflows")
_LINE_ALIASES = {"L12": "L1-L2", "L23": "L2-L3", "L31": "L3-L1"}
_ITEM = re.compile(r"^(?:[A-Za-z]+\d*|[LS]\d+:[LS]\d+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sensor:
    """One ``values`` entry: group ``l``, ``s`` or ``env``; waves for n/m/f (env: n only)."""

    name: str
    group: str
    type_code: str
    waves: Mapping[str, Wave]


@dataclass(frozen=True, slots=True)
class Product:
    """One ``energy`` (type P) or ``apparent`` (type S) entry such as ``S1*L1``."""

    name: str
    section: str
    wave: Wave


def default_sensors() -> tuple[tuple[Sensor, ...], tuple[Product, ...]]:
    def line(name: str, base: float, ph: float) -> Sensor:
        return Sensor(name, "l", "V", {"n": Wave(base, 1.0, 300.0, ph),
                                       "m": Wave(0.02, 0.01, 77.0, ph),
                                       "f": Wave(60.0, 0.02, 60.0, ph)})

    def ct(name: str, base: float, ph: float) -> Sensor:
        return Sensor(name, "s", "I", {"n": Wave(base, base / 4, 120.0, ph),
                                       "m": Wave(0.0, 0.005, 50.0, ph),
                                       "f": Wave(60.0, 0.02, 60.0, ph)})

    sensors = (
        line("L1", 120.5, 0.0), line("L2", 119.8, 2.1),
        ct("S1", 12.0, 0.0), ct("S2", 8.0, 0.7), ct("S3", 3.5, 1.4), ct("S4", 0.8, 2.1),
        Sensor("Tpcb", "env", "T", {"n": Wave(38.2, 0.8, 1800.0)}),
    )
    products = (
        Product("S1*L1", "energy", Wave(1380.0, 480.0, 120.0)),
        Product("S2*L2", "energy", Wave(910.0, 230.0, 120.0, 0.7)),
        Product("-S3*L1", "energy", Wave(-400.0, 100.0, 120.0, 1.4)),
        Product("S1*L1", "apparent", Wave(1450.0, 500.0, 120.0)),
        Product("S2*L2", "apparent", Wave(960.0, 240.0, 120.0, 0.7)),
    )
    return sensors, products


def _pick(sensors: Sequence[Sensor], group: str, spec: str) -> set[str]:
    names: set[str] = set()
    mine = [s for s in sensors if s.group == group]
    for item in spec.split(","):
        if not _ITEM.match(item):
            raise QueryError(f"Invalid sensor selection: {item!r}.")
        low, _, high = item.partition(":")
        if low.upper() == "ALL":
            names |= {s.name for s in mine}
        elif high:
            lo, hi = int(low[1:]), int(high[1:])
            names |= {s.name for s in mine if s.name[1:].isdigit() and lo <= int(s.name[1:]) <= hi}
        else:
            wanted = _LINE_ALIASES.get(item.upper(), item)
            names |= {s.name for s in mine if s.name.lower() == wanted.lower()}
    return names


class LocalSensors:
    """The sensors of one meter and their ``/local`` reply."""

    def __init__(self, created: int) -> None:
        self.created = created
        self.sensors, self.products = default_sensors()

    def rate(self, name: str, t: float, measurement: str = "n", section: str = "values") -> float:
        return self._wave(name, measurement, section).rate(t)

    def cumul(self, name: str, t: float, measurement: str = "n", section: str = "values") -> int:
        wave = self._wave(name, measurement, section)
        code = {"energy": "P", "apparent": "S"}.get(section)
        if code is None:
            code = "F" if measurement == "f" else self._sensor(name).type_code
        return round(wave.integral(self.created, t) / quantum(code))

    def _sensor(self, name: str) -> Sensor:
        for s in self.sensors:
            if s.name == name:
                return s
        raise KeyError(name)

    def _wave(self, name: str, measurement: str, section: str) -> Wave:
        if section == "values":
            return self._sensor(name).waves[measurement]
        for p in self.products:
            if p.name == name and p.section == section:
                return p.wave
        raise KeyError(name)

    def reply(self, params: Sequence[tuple[str, str]], t: int, ts_text: str) -> dict[str, object]:
        flags = {k for k, _ in params}
        known = set(SECTIONS) | set(METRICS) | set(MEASUREMENTS) | {"env", "l", "s"}
        unknown = sorted(flags - known)
        if unknown:
            raise QueryError(f"Invalid query option: {unknown[0]}.")
        sections = [s for s in SECTIONS if s in flags] or ["values"]
        metrics = [m for m in METRICS if m in flags] or ["rate", "type"]
        meas = [v for k, v in MEASUREMENTS.items() if k in flags] or ["n", "m", "f"]
        groups = {"env": "env", "l": "l", "s": "s"}
        chosen: set[str] = set()
        given = [(groups[k], v) for k, v in params if k in groups]
        for group, spec in given:
            chosen |= _pick(self.sensors, group, spec)
        if not given:
            chosen = {s.name for s in self.sensors}
        reply: dict[str, object] = {"ts": ts_text}
        if "values" in sections:
            reply["values"] = {s.name: self._values_entry(s, t, metrics, meas)
                               for s in self.sensors if s.name in chosen}
        for section in ("energy", "apparent"):
            if section in sections:
                reply[section] = {p.name: self._product_entry(p, t, metrics)
                                  for p in self.products if p.section == section}
        if "stats" in sections:
            reply["stats"] = dict.fromkeys(STATS, 0)
        reply["ctid"] = "idle"
        return reply

    def _values_entry(self, s: Sensor, t: int, metrics: list[str],
                      meas: list[str]) -> dict[str, object]:
        present = [m for m in meas if m in s.waves]
        entry: dict[str, object] = {}
        if "type" in metrics:
            entry["type"] = s.type_code
        if "rate" in metrics:
            entry["rate"] = {m: s.waves[m].rate(t) for m in present}
        if "cumul" in metrics and s.group != "env":
            entry["cumul"] = {m: str(self.cumul(s.name, t, m)) for m in present}
        return entry

    def _product_entry(self, p: Product, t: int, metrics: list[str]) -> dict[str, object]:
        entry: dict[str, object] = {}
        if "rate" in metrics:
            entry["rate"] = p.wave.rate(t)
        if "cumul" in metrics:
            entry["cumul"] = str(self.cumul(p.name, t, section=p.section))
        return entry
