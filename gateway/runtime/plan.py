"""The plan: everything the configuration creates for each meter, built by the code that
publishes it (``egauge-gateway plan``, :mod:`gateway.runtime.plancli`).

A meter's plan starts from its register set -- read from the meter as its poller reads it
(:func:`gateway.core.registers_of`), or, when the meter cannot be reached, taken from its pins
-- and goes through the objects the running gateway uses: the slugs come from a copy of the
meter's slug pins (:class:`~gateway.mqtt.MeterSlugs`, so new names show the slug they would
get), the MQTT topics and the Home Assistant entities from its :class:`~gateway.mqtt.MeterPlan`
(discovery by :func:`~gateway.mqtt.discover`), the Modbus unit from the
:class:`~gateway.modbus.Layout` of its map and a copy of its Modbus pins
(:func:`~gateway.modbus.pin_new`). Nothing is written. What differs from the pins -- names
never pinned, pinned names gone from the meter, renames and retypes, pinned addresses the map
now covers -- is kept in :class:`Changes` for ``plan --diff``.

Each meter is planned in the view of the shard instance that serves it (its bridge, ports and
gateway name). Sparkplug metrics and aliases have their place in :attr:`MeterReport.sparkplug`,
to be filled once the Sparkplug output exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from gateway.config import Config, MeterConfig, ShardConfig, shard
from gateway.meter import type_code
from gateway.modbus import (
    Layout,
    PinStore,
    load_mapping,
    pin_new,
    point_unit,
    polled_names,
    with_counters,
)
from gateway.model import Identity, RegisterChange, RegisterInfo
from gateway.mqtt import (
    LEDGER_FILE,
    Assignment,
    MeterPlan,
    MeterSlugs,
    RetainedLedger,
    bridge_config,
    discover,
    slug,
    topics_of,
)
from gateway.sparkplug import book_of, planned_metrics
from gateway.sparkplug import topics_of as sparkplug_topics

# one entry per Sparkplug metric of a meter (name, alias, datatype, ...): see sparkplug_of
SparkplugMetrics = tuple[Mapping[str, object], ...]


@dataclass(frozen=True, slots=True)
class MeterSource:
    """What a meter's plan starts from: ``live`` (read from the meter at ``detail``, its URL)
    or from the pins (``detail`` says why the meter could not be read)."""

    meter: MeterConfig
    live: bool
    detail: str
    identity: Identity | None
    registers: tuple[RegisterInfo, ...]


@dataclass(frozen=True, slots=True)
class Topic:
    topic: str
    content: str
    retained: bool


@dataclass(frozen=True, slots=True)
class Entity:
    """A Home Assistant entity as its discovery payload declares it."""

    entity_id: str
    name: str
    unique_id: str
    register: str | None
    device_class: str | None
    state_class: str | None
    unit: str | None
    state_topic: str
    discovery_topic: str


@dataclass(frozen=True, slots=True)
class Address:
    """One Modbus point: ``registers`` 16-bit registers from ``address``."""

    address: int
    registers: int
    type: str
    word_order: str
    scale: float
    unit: str
    source: str
    name: str
    register: str | None


@dataclass(frozen=True, slots=True)
class ModbusUnit:
    unit_id: int
    listen: str
    mapping: str
    addresses: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class Register:
    """One register of the set: its slug and, with an ``auto`` map, its Modbus slot."""

    name: str
    type_code: str
    unit: str
    slug: str
    slot_address: int | None = None  # the first address of its auto slot


@dataclass(frozen=True, slots=True)
class Changes:
    """How the register set differs from the pins (``plan --diff``)."""

    first_run: bool = False  # no slug pins yet: every name is pinned as earlier releases did
    new: tuple[str, ...] = ()  # names without a slug pin, with the slug they would get
    gone: tuple[str, ...] = ()  # pinned, on the meter at the last look, not now
    changed: tuple[RegisterChange, ...] = ()  # renamed or retyped
    modbus_new: tuple[str, ...] = ()  # names that would get a Modbus slot
    modbus_dropped: tuple[str, ...] = ()  # pinned slots the map now covers: not served

    @property
    def any(self) -> bool:
        return bool(self.new or self.gone or self.changed or self.modbus_new
                    or self.modbus_dropped)


@dataclass(frozen=True, slots=True)
class MeterReport:
    meter: str
    instance: int
    source: MeterSource
    registers: tuple[Register, ...]
    slugs: Mapping[str, str]
    topics: tuple[Topic, ...] = ()
    entities: tuple[Entity, ...] = ()
    modbus: ModbusUnit | None = None
    history_topic: str | None = None
    changes: Changes = field(default_factory=Changes)
    sparkplug: SparkplugMetrics | None = None  # see sparkplug_of


@dataclass(frozen=True, slots=True)
class InstanceReport:
    """The gateway's own topics and entity, per shard instance."""

    index: int
    name: str
    topics: tuple[Topic, ...]
    entity: Entity | None
    modbus_listen: str | None
    http_listen: str | None


def instance_view(config: Config, index: int) -> Config:
    """The configuration as shard instance ``index`` runs it."""
    return shard.instance(replace(config, shard=ShardConfig(index, config.shard.count),
                                  foreign_meters=None))


def view_of(config: Config, meter: MeterConfig) -> tuple[int, Config]:
    """The index and the view of the instance that serves ``meter``."""
    index = shard.owner(meter.id, config.shard.count)
    return index, instance_view(config, index)


def from_pins(meter: MeterConfig, slugs: MeterSlugs, modbus: PinStore, reason: str
              ) -> MeterSource:
    """The register set and identity as the pins remember them: the names on the meter at
    the last look, in the meter's order (without slug pins: the Modbus pins' names)."""
    pinned = [(n, p) for n, p in slugs.items() if p.present]
    if pinned:
        pinned.sort(key=lambda item: (item[1].idx is None, item[1].idx or 0))
        registers = tuple(RegisterInfo(n, p.type_code, -1 if p.idx is None else p.idx, p.did)
                          for n, p in pinned)
    else:
        registers = tuple(RegisterInfo(n, p.type_code, -1)
                          for n, p in modbus.load(meter.id).items())
    ident = slugs.identity
    identity = Identity(ident["serial"], ident.get("model", ""), ident.get("firmware", ""),
                        ident.get("hostname", "")) if "serial" in ident else None
    return MeterSource(meter, False, reason, identity, registers)


def plan_meter(config: Config, source: MeterSource, slugs: MeterSlugs) -> MeterReport:
    """The plan of one meter (``config`` as written; ``slugs``: its pins, not changed)."""
    meter = source.meter
    index, view = view_of(config, meter)
    pins = slugs.copy()
    done: list[Assignment] = []

    def assign(registers: Sequence[RegisterInfo]) -> Mapping[str, str]:
        done.append(pins.assign(registers))
        return done[-1].slugs

    def entity_slug(key: str, wanted: str) -> str:
        return pins.entity(key, wanted)[0]

    plan = MeterPlan(meter, topics_of(view), assign, entity_slug)
    ledger = RetainedLedger(shard.instance_dir(view) / LEDGER_FILE)
    ledger.load()
    plan.net.update(ledger.net(meter.id))
    plan.identity = source.identity
    plan.set_registers(source.registers)
    discover(plan, view.mqtt, shard.instance_name(view))
    assignment = done[-1]
    unit, modbus_new, dropped, slots = _modbus(view, meter, source.registers)
    names = set(assignment.slugs)
    changes = Changes(
        first_run=not len(slugs),
        new=assignment.added,
        gone=tuple(n for n, p in slugs.items() if p.present and n not in names),
        changed=assignment.changes,
        modbus_new=modbus_new,
        modbus_dropped=dropped,
    )
    registers = tuple(Register(r.name, r.type_code, type_code(r.type_code).unit,
                               plan.slugs[r.name], slots.get(r.name)) for r in source.registers)
    history = plan.topics.history(meter.id) if view.mqtt.enabled and view.history.enabled \
        else None
    return MeterReport(meter.id, index, source, registers, dict(plan.slugs),
                       _topics(view, plan) if view.mqtt.enabled else (),
                       _entities(plan) if view.mqtt.enabled else (), unit, history, changes,
                       sparkplug_of(view, plan))


def sparkplug_of(view: Config, plan: MeterPlan) -> SparkplugMetrics | None:
    """The Sparkplug metrics and aliases of one meter (its DBIRTH topic and metrics), built by
    the Sparkplug output's own code from the pinned alias book and the meter's pinned slugs
    (``plan.slugs``); None while Sparkplug is off."""
    if not view.sparkplug.enabled:
        return None
    meter = plan.meter
    slugs = plan.slugs
    metrics = planned_metrics(book_of(view), meter, plan.registers,
                              lambda _m, name: slugs.get(name) or slug(name))
    topic = sparkplug_topics(view).dbirth(meter.id)
    return tuple({"topic": topic, **metric} for metric in metrics)


def _topics(view: Config, plan: MeterPlan) -> tuple[Topic, ...]:
    cfg, meter = view.mqtt, plan.meter
    out = [Topic(plan.availability_topic, "online / offline", True),
           Topic(plan.device_topic, "JSON: serial, model, firmware, hostname", True),
           Topic(plan.state_topic, "JSON: every register, every poll", cfg.retain)]
    out.append(Topic(plan.diagnostics_topic,
                     "JSON: online, data age, failed polls, poll latency", cfg.retain))
    if cfg.per_register_topics:
        for reg in plan.registers:
            meaning = type_code(reg.type_code)
            unit = meaning.unit
            out.append(Topic(plan.register_topics[reg.name],
                             f"rate of {reg.name!r}{f' ({unit})' if unit else ''}", cfg.retain))
            for part, what in (("energy", "energy"), ("import", "import counter"),
                               ("export", "export counter")):
                topic = plan.part_topics.get((reg.name, part))
                if topic is not None:
                    out.append(Topic(topic, f"{what} of {reg.name!r} "
                                            f"({meaning.cumulative_unit})", cfg.retain))
    if view.history.enabled:
        out.append(Topic(plan.topics.history(meter.id), "history rows after a gap", False))
    allowed = ", ".join(meter.commands.allow) or "nothing allowed"
    out.append(Topic(plan.topics.request(meter.id, "<action>"),
                     f"command requests ({allowed})", False))
    out.append(Topic(plan.topics.response(meter.id, "<action>"), "command responses", False))
    out.extend(Topic(topic, "Home Assistant discovery", True) for topic in plan.discovery)
    return tuple(out)


def _entity(topic: str, payload: bytes, names: Mapping[str, str]) -> Entity:
    """An entity from its discovery config; ``names`` (slug -> register name) tells whose
    it is from the topic's object id (``<slug>``, or ``<slug>-energy``, ``-import``,
    ``-export``; none for a meter's diagnostics)."""
    data = json.loads(payload)
    object_id = topic.rsplit("/", 2)[-2]
    base, _, role = object_id.rpartition("-")
    register = names.get(object_id) or (
        names.get(base) if role in ("energy", "import", "export") else None)
    return Entity(str(data.get("default_entity_id", "")), str(data.get("name", "")),
                  str(data.get("unique_id", "")), register, data.get("device_class"),
                  data.get("state_class"), data.get("unit_of_measurement"),
                  str(data.get("state_topic", "")), topic)


def _entities(plan: MeterPlan) -> tuple[Entity, ...]:
    names = {s: n for n, s in plan.slugs.items()}
    return tuple(_entity(t, p, names) for t, p in plan.discovery.items())


def _modbus(view: Config, meter: MeterConfig, registers: Sequence[RegisterInfo]
            ) -> tuple[ModbusUnit | None, tuple[str, ...], tuple[str, ...], dict[str, int]]:
    """The unit as the Modbus output would serve it, the names that would get a slot now,
    the pinned names the map now covers, and the first address of each auto slot."""
    if not view.modbus.enabled:
        return None, (), (), {}
    spec = meter.modbus_mapping or view.modbus.mapping
    rmap = load_mapping(spec)
    pins = PinStore(view.gateway.state_dir).load(meter.id)
    polled = polled_names(registers, meter.registers)
    new = pin_new(rmap, pins, with_counters(polled, pins, meter.energy)[0])
    layout = Layout.build(rmap, pins)
    codes = {n: p.type_code for n, p in pins.items()} | dict(polled)
    addresses = tuple(Address(p.address, p.size, p.type, p.word_order, p.scale,
                              point_unit(p, codes), p.source, p.name, p.register)
                      for p in layout.points)
    slots: dict[str, int] = {}
    if rmap.auto is not None:
        explicit = rmap.pinned_names()
        for name, pin in pins.items():
            if name not in layout.dropped and name not in explicit:
                slots[name] = rmap.auto.start + pin.slot * rmap.auto.stride
    listen = f"{view.modbus.host}:{view.modbus.port}"
    return (ModbusUnit(meter.modbus_unit_id, listen, spec, addresses), tuple(new),
            layout.dropped, slots)


def plan_instance(config: Config, index: int) -> InstanceReport:
    view = instance_view(config, index)
    name = shard.instance_name(view)
    topics: list[Topic] = []
    entity = None
    if view.mqtt.enabled:
        t = topics_of(view)
        topics = [Topic(t.bridge_state, "online / offline (also the MQTT will)", True),
                  Topic(t.bridge_info, "JSON: version, meters, outputs", True),
                  Topic(t.bridge_audit, "one JSON event per command request", False)]
        if view.mqtt.homeassistant.enabled:
            url = view.http.status_url if view.http.enabled else None
            topic, payload = bridge_config(t, name, url)
            topics.append(Topic(topic, "Home Assistant discovery", True))
            entity = _entity(topic, payload, {})
    modbus = f"{view.modbus.host}:{view.modbus.port}" if view.modbus.enabled else None
    http = f"{view.http.host}:{view.http.port}" if view.http.enabled else None
    return InstanceReport(index, name, tuple(topics), entity, modbus, http)


def entity_conflicts(reports: Sequence[MeterReport]) -> dict[str, list[str]]:
    """Entity ids that two entities would claim (Home Assistant would give the second one a
    ``_2`` suffix): entity id -> the meters claiming it."""
    claims: dict[str, list[str]] = {}
    for report in reports:
        for entity in report.entities:
            claims.setdefault(entity.entity_id, []).append(report.meter)
    return {eid: meters for eid, meters in claims.items() if len(meters) > 1}
