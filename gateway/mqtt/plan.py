"""Per meter, everything static about its MQTT output, computed once per register set.

Topic strings, slugs, the constant part of each register's entry in the state JSON and the
discovery payloads are built when the register set or the identity changes, never per poll;
a poll only formats numbers and joins strings. The running output and ``egauge-gateway plan``
build the same :class:`MeterPlan` (:func:`discover` builds its discovery for both), so the
plan shows what the gateway publishes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.config import MeterConfig, MqttConfig
from gateway.core import PollStats
from gateway.energy import counted
from gateway.history import HistoryRow
from gateway.meter import quantized, to_digits, type_code
from gateway.model import (
    EnergyCount,
    Identity,
    LocalValue,
    Reading,
    RegisterInfo,
    RegisterValue,
)
from gateway.mqtt.discovery import (
    ROLES,
    EntitySlug,
    MeterDiscovery,
    alert_event_config,
    expire_after,
    has_energy,
    runs_backwards,
    unpinned_entity,
)
from gateway.mqtt.topics import Topics, unique_slugs

# register set -> the slug of each name (the pinned slugs of the meter, see mqtt.identities)
SlugAssigner = Callable[[Sequence[RegisterInfo]], Mapping[str, str]]


def unpinned(registers: Sequence[RegisterInfo]) -> Mapping[str, str]:
    """Slugs from the names alone, without pins (for tests and throw-away plans)."""
    return unique_slugs(r.name for r in registers)


def number(value: float | None) -> str:
    """A JSON number (``null`` for a missing, infinite or NaN value)."""
    if type(value) is float:  # the usual case first (called for every value of every poll)
        return repr(value) if value - value == 0.0 else "null"  # inf - inf, nan - nan: nan
    if value is None or not math.isfinite(value):
        return "null"
    return repr(value) if isinstance(value, float) else str(int(value))


def fixed(value: float | None, digits: int | None) -> str:
    """The JSON number of ``value`` rounded to ``digits`` decimals (None: as it is), as
    ``number(to_digits(value, digits))`` says it, for the numbers of every poll."""
    if type(value) is float and digits is not None:
        if value - value != 0.0:  # inf - inf, nan - nan: nan
            return "null"
        return repr(round(value, digits)) if digits else str(round(value))
    return number(to_digits(value, digits))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _local_json(local: tuple[LocalValue, ...]) -> str:
    return json.dumps(
        {v.name: {"type": v.type_code, "unit": v.unit, "normal": v.normal, "mean": v.mean,
                  "freq": v.freq} for v in local},
        separators=(",", ":"), ensure_ascii=False, allow_nan=False,
    ) if local else "{}"


@dataclass(slots=True)
class MeterPlan:
    """The precomputed output of one meter and what was last sent for it."""

    meter: MeterConfig
    topics: Topics
    assign: SlugAssigner = unpinned
    entity_slug: EntitySlug = unpinned_entity  # the pinned slugs of entities of their own
    availability_topic: str = ""
    state_topic: str = ""
    device_topic: str = ""
    diagnostics_topic: str = ""
    identity: Identity | None = None
    registers: tuple[RegisterInfo, ...] = ()
    slugs: dict[str, str] = field(default_factory=dict)
    register_topics: dict[str, str] = field(default_factory=dict)
    # (register name, part) -> topic: "energy" (cumulative), "import", "export"
    part_topics: dict[tuple[str, str], str] = field(default_factory=dict)
    # register name -> its parts as (part, key of part_topics, topic): energy, import, export
    parts_of: dict[str, tuple[tuple[str, tuple[str, str], str], ...]] = field(
        default_factory=dict)
    counted: frozenset[str] = frozenset()  # the registers with energy counters
    discovery: dict[str, bytes] = field(default_factory=dict)
    net: set[str] = field(default_factory=set)
    state: bytes | None = None
    reading: Reading | None = None  # the latest
    diagnostics: bytes | None = None
    diagnostics_at: float = -math.inf  # clock() when the diagnostics were last published
    online: bool | None = None
    last_rate: dict[str, float] = field(default_factory=dict)
    last_sent: dict[str, float] = field(default_factory=dict)
    last_part: dict[tuple[str, str], str] = field(default_factory=dict)  # payloads sent
    part_sent: dict[tuple[str, str], float] = field(default_factory=dict)
    # register name -> the constant start of its state-JSON entry, and the decimals of its
    # rate and of its cumulative value
    _columns: dict[str, tuple[str, int | None, int | None]] = field(default_factory=dict)
    # each register's counters as last rendered: they change once per write of the counters
    # (a second), not with every poll
    _energy: dict[str, tuple[EnergyCount, str]] = field(default_factory=dict)
    _watch: dict[str, RegisterValue | None] = field(default_factory=dict)
    _meter_json: str = ""  # the meter id as JSON (the plan is its meter's)

    def __post_init__(self) -> None:
        meter = self.meter.id
        self._meter_json = json.dumps(meter)
        self.availability_topic = self.topics.availability(meter)
        self.state_topic = self.topics.state(meter)
        self.device_topic = self.topics.device(meter)
        self.diagnostics_topic = self.topics.diagnostics(meter)

    def set_registers(self, registers: tuple[RegisterInfo, ...]) -> None:
        """Adopt a new register set: slugs, topics and state-JSON fragments."""
        self.registers = registers
        self.slugs = dict(self.assign(registers))
        meter = self.meter.id
        self.register_topics = {
            name: self.topics.register(meter, s) for name, s in self.slugs.items()
        }
        cfg = self.meter.energy
        self.counted = frozenset(r.name for r in registers
                                 if counted(cfg, r.name, r.type_code))
        self.part_topics = {}
        self.parts_of = {}
        for r in registers:
            parts = (("energy",) if has_energy(r) else ()) + (
                ROLES if r.name in self.counted else ())
            entries = []
            for part in parts:
                key = (r.name, part)  # one tuple for the topic's key and the register's entry
                topic = self.part_topics[key] = self.topics.register_part(
                    meter, self.slugs[r.name], part)
                entries.append((part, key, topic))
            if entries:
                self.parts_of[r.name] = tuple(entries)
        self._columns.clear()
        self._energy.clear()
        self.last_rate.clear()
        self.last_sent.clear()
        self.last_part.clear()
        self.part_sent.clear()
        self._watch = {
            r.name: None for r in registers if has_energy(r) and r.name.endswith("+")
            and r.name not in self.net
        }

    def covers(self, reading: Reading) -> bool:
        """Whether every register of ``reading`` has a slug in this plan."""
        slugs = self.slugs
        return all(v.name in slugs for v in reading.registers)

    def adopt_reading_names(self, reading: Reading) -> None:
        """Extend the register set with names only the reading has (no metadata yet)."""
        known = {r.name for r in self.registers}
        extra = tuple(
            RegisterInfo(v.name, v.type_code, -1) for v in reading.registers if v.name not in known
        )
        self.set_registers(self.registers + extra)

    def build_discovery(self, gateway_id: str, expire_after_s: int, per_register: bool) -> None:
        if self.identity is None:
            self.discovery = {}
            return
        described = MeterDiscovery(
            self.topics, gateway_id, self.meter, self.identity, expire_after_s, per_register
        )
        self.discovery = described.configs(
            ((r, self.slugs[r.name]) for r in self.registers), frozenset(self.net),
            self.counted, self.entity_slug,
        ) | described.diagnostics(self.entity_slug)
        if self.meter.alerts.enabled:
            topic, payload = alert_event_config(described)
            self.discovery[topic] = payload

    def state_json(self, reading: Reading, now: float) -> bytes:
        """The state payload of one reading (``now``: gateway wall clock, for ``age``)."""
        columns = self._columns
        parts = []
        for v in reading.registers:
            column = columns.get(v.name)
            if column is None:
                column = columns[v.name] = self._column(v)
            head, rate_digits, cumulative_digits = column
            rate = fixed(v.rate, rate_digits)
            cumulative = fixed(v.cumulative, cumulative_digits)
            energy = v.energy
            if energy is None:
                parts.append(f'{head}{rate},"cumulative":{cumulative}}}')
            else:
                cached = self._energy.get(v.name)
                if cached is None or cached[0] is not energy:
                    cached = self._energy[v.name] = (energy, (
                        f'"import":{fixed(energy.import_value, cumulative_digits)},'
                        f'"export":{fixed(energy.export_value, cumulative_digits)},'
                        f'"energy_through":{energy.through}}}'))
                parts.append(f'{head}{rate},"cumulative":{cumulative},{cached[1]}')
        age = round(max(0.0, now - reading.ts), 3)
        text = (
            f'{{"meter":{self._meter_json},"ts":{number(reading.ts)},'
            f'"age":{number(age)},"registers":{{{",".join(parts)}}},'
            f'"local":{_local_json(reading.local)}}}'
        )
        return text.encode("utf-8")

    def history_json(self, rows: Sequence[HistoryRow]) -> bytes:
        """A history payload: each register's name and units once, then the rows (oldest
        first) with the average ``rate`` over ``dt`` and the ``cumulative`` value at ``ts``."""
        slugs = self.slugs
        first = {v.name: v for row in rows for v in row.values if v.name in slugs}
        registers = {
            slugs[name]: {"name": name, "type": v.type_code, "unit": v.unit,
                          "cumulative_unit": v.cumulative_unit}
            for name, v in first.items()
        }
        out = [_history_row(row, slugs) for row in rows]
        return json.dumps(
            {"meter": self.meter.id, "registers": registers, "rows": out},
            separators=(",", ":"), ensure_ascii=False, allow_nan=False,
        ).encode("utf-8")

    def diagnostics_json(self, reading: Reading | None, now: float, stats: PollStats | None
                         ) -> bytes:
        """The diagnostics payload: online, the age of the data (s), failed polls since the
        start, failed polls in a row, the latest poll's latency (ms)."""
        age = None if reading is None else round(max(0.0, now - reading.ts), 1)
        latency = None if stats is None or stats.last_latency_s is None \
            else round(stats.last_latency_s * 1000.0, 1)
        return json.dumps(
            {"online": bool(self.online), "age": age,
             "failed_polls": None if stats is None else stats.polls_failed,
             "failed_in_a_row": None if stats is None else stats.consecutive_failures,
             "polls": None if stats is None else stats.polls_ok,
             "latency_ms": latency},
            separators=(",", ":"), allow_nan=False,
        ).encode("utf-8")

    def _column(self, v: RegisterValue) -> tuple[str, int | None, int | None]:
        dump = json.dumps
        head = (
            f'{dump(self.slugs[v.name])}:{{"name":{dump(v.name, ensure_ascii=False)},'
            f'"type":{dump(v.type_code)},"unit":{dump(v.unit, ensure_ascii=False)},'
            f'"cumulative_unit":{dump(v.cumulative_unit, ensure_ascii=False)},"rate":'
        )
        meaning = type_code(v.type_code)
        return head, meaning.rate_digits, meaning.cumulative_digits

    def newly_net(self, reading: Reading) -> list[str]:
        """Registers that this reading shows running backwards for the first time."""
        if not self._watch:
            return []
        found = []
        for v in reading.registers:
            if v.name in self._watch:
                if runs_backwards(v, self._watch[v.name]):
                    found.append(v.name)
                else:
                    self._watch[v.name] = v
        for name in found:
            del self._watch[name]
            self.net.add(name)
        return found

    def retained_topics(self, retain_values: bool, per_register: bool) -> set[str]:
        """Every retained topic this meter's output currently owns."""
        topics = {self.availability_topic, self.device_topic, *self.discovery}
        if retain_values:
            topics.update((self.state_topic, self.diagnostics_topic))
            if per_register:
                topics.update(self.register_topics.values())
                topics.update(self.part_topics.values())
        return topics


def _history_row(row: HistoryRow, slugs: Mapping[str, str]) -> dict[str, object]:
    """One history row: rates and cumulative values rounded to their quanta; the import
    and export of the row's seconds where the register has counters."""
    mine = [v for v in row.values if v.name in slugs]
    out: dict[str, object] = {
        "ts": row.ts, "dt": row.dt,
        "rate": {slugs[v.name]: _finite(quantized(v.type_code, v.rate)) for v in mine},
        "cumulative": {slugs[v.name]: _finite(quantized(v.type_code, v.cumulative,
                                                        cumulative=True)) for v in mine},
    }
    if row.split:
        for index, key in enumerate(ROLES):
            out[key] = {slugs[v.name]: quantized(
                v.type_code, row.split[v.name][index] * type_code(v.type_code).cumulative_factor,
                cumulative=True) for v in mine if v.name in row.split}
    return out


def discover(plan: MeterPlan, mqtt: MqttConfig, gateway_id: str) -> None:
    """Build ``plan``'s Home Assistant discovery as the output publishes it (none when
    discovery is off)."""
    if mqtt.homeassistant.enabled:
        plan.build_discovery(gateway_id, expire_after(plan.meter, mqtt), mqtt.per_register_topics)
