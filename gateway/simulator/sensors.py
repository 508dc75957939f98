"""``GET /api/local``: the meter's own sensors (egauge-webapi §3).

The sensors and their products come from the site (:mod:`gateway.simulator.site`): line
inputs ``L1`` and ``L2`` (V), CT inputs ``S1``..``S5`` (A), the board temperature ``Tpcb``;
``energy`` (type P) and ``apparent`` (type S) products of sensor pairs. Cumulative values
count quanta since the database was created, like registers, and are sent as decimal
strings; the rate of a second is the change of that count over the second, in the type's
quantum. While a CTid scan or flash is active the reply says ``"ctid": "active"`` and every
rate reads zero (cumulative values are not touched).
Sensor selection: when none of ``env``/``l``/``s`` is given every sensor is listed;
otherwise only the groups given, each a comma list (``ALL``, names, ranges like ``S1:S3``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.simulator.registers import quantum
from gateway.simulator.reply import QueryError
from gateway.simulator.signals import Signal, quantised

SECTIONS = ("values", "energy", "apparent", "stats")
METRICS = ("rate", "cumul", "type")
MEASUREMENTS = {"normal": "n", "mean": "m", "freq": "f"}
STATS = ("dt_overflow", "upos_overflow", "zc_overflow", "dt2_overflow",
         "dt2_out_of_10percent_bounds", "ring_buffer_overflows", "dma_late", "intgr_overflows")
_LINE_ALIASES = {"L12": "L1-L2", "L23": "L2-L3", "L31": "L3-L1"}
_ITEM = re.compile(r"^(?:[A-Za-z]+\d*|[LS]\d+:[LS]\d+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sensor:
    """One ``values`` entry: group ``l``, ``s`` or ``env``; signals for n/m/f (env: n only)."""

    name: str
    group: str
    type_code: str
    waves: Mapping[str, Signal]


@dataclass(frozen=True, slots=True)
class Product:
    """One ``energy`` (type P) or ``apparent`` (type S) entry such as ``S1*L1``."""

    name: str
    section: str
    wave: Signal


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

    def __init__(self, created: int, sensors: Sequence[Sensor],
                 products: Sequence[Product]) -> None:
        self.created = created
        self.sensors = tuple(sensors)
        self.products = tuple(products)

    def _quantum(self, name: str, measurement: str, section: str) -> float:
        code = {"energy": "P", "apparent": "S"}.get(section)
        if code is None:
            code = "F" if measurement == "f" else self._sensor(name).type_code
        return quantum(code)

    def rate(self, name: str, t: float, measurement: str = "n", section: str = "values") -> float:
        """The rate of the second ``floor(t)``: its change of count, in quanta."""
        second = math.floor(t)
        change = self.cumul(name, second, measurement, section) - self.cumul(
            name, second - 1, measurement, section)
        return quantised(change, self._quantum(name, measurement, section))

    def cumul(self, name: str, t: float, measurement: str = "n", section: str = "values") -> int:
        q = self._quantum(name, measurement, section)
        return self._wave(name, measurement, section).counts(self.created, math.floor(t), q)

    def _sensor(self, name: str) -> Sensor:
        for s in self.sensors:
            if s.name == name:
                return s
        raise KeyError(name)

    def _wave(self, name: str, measurement: str, section: str) -> Signal:
        if section == "values":
            return self._sensor(name).waves[measurement]
        for p in self.products:
            if p.name == name and p.section == section:
                return p.wave
        raise KeyError(name)

    def reply(self, params: Sequence[tuple[str, str]], t: int, ts_text: str,
              ctid: str = "idle") -> dict[str, object]:
        """The ``/local`` object at second ``t``; ``ctid`` other than ``idle`` zeroes rates."""
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
        live = ctid == "idle"
        reply: dict[str, object] = {"ts": ts_text}
        if "values" in sections:
            reply["values"] = {s.name: self._values_entry(s, t, metrics, meas, live)
                               for s in self.sensors if s.name in chosen}
        for section in ("energy", "apparent"):
            if section in sections:
                reply[section] = {p.name: self._product_entry(p, t, metrics, live)
                                  for p in self.products if p.section == section}
        if "stats" in sections:
            reply["stats"] = dict.fromkeys(STATS, 0)
        reply["ctid"] = ctid
        return reply

    def _values_entry(self, s: Sensor, t: int, metrics: list[str],
                      meas: list[str], live: bool) -> dict[str, object]:
        present = [m for m in meas if m in s.waves]
        entry: dict[str, object] = {}
        if "type" in metrics:
            entry["type"] = s.type_code
        if "rate" in metrics:
            entry["rate"] = {m: self.rate(s.name, t, m) if live else 0.0 for m in present}
        if "cumul" in metrics and s.group != "env":
            entry["cumul"] = {m: str(self.cumul(s.name, t, m)) for m in present}
        return entry

    def _product_entry(self, p: Product, t: int, metrics: list[str],
                       live: bool) -> dict[str, object]:
        entry: dict[str, object] = {}
        if "rate" in metrics:
            entry["rate"] = self.rate(p.name, t, section=p.section) if live else 0.0
        if "cumul" in metrics:
            entry["cumul"] = str(self.cumul(p.name, t, section=p.section))
        return entry
