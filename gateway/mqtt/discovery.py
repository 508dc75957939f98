"""Home Assistant MQTT discovery payloads (northbound-conventions.md §2.1).

One HA device per meter (identified by its serial number) with one sensor per register, plus
an energy sensor for every power register (kWh; kVAh for apparent, kvarh for reactive power),
an ``... import`` and an ``... export`` sensor (``total_increasing``) for every register with
energy counters (docs/ENERGY.md), diagnostic entities (online, data age, failed polls, poll
latency), and one device for the gateway itself (a connectivity binary sensor on
``bridge/state``, with the status page as its ``configuration_url``) that the meters point
to with ``via_device``. Only ``kWh`` sensors carry ``device_class: energy``: Home Assistant
has no class for apparent energy, and its ``reactive_energy`` class is too recent for the
versions still in use, so kVAh and kvarh sensors carry their unit and state class only.

Energy state class: ``total_increasing`` treats any decrease as a meter reset, so it is used
only for registers that cannot run backwards: names ending in ``+`` (eGauge's mark for a
register that records positive values only) that are not a virtual formula with a minus and
that were never seen with a negative rate or a falling cumulative value. Everything else is
``total``, which the energy dashboard accepts for net (import - export) counters too.

Entity ids: every entity carries ``object_id`` and ``default_entity_id`` built from the meter
id and the register's pinned slug (:func:`entity_object_id`), so its entity id is
``sensor.<meter>_<slug>`` (``..._energy`` for the energy sensor) rather than whatever Home
Assistant makes of the names. Home Assistant 2025.10 and later read ``default_entity_id``
(``object_id`` is deprecated there, to be dropped in 2026.4); earlier versions read
``object_id`` and drop keys they do not know. Either only names a new entity: an entity Home
Assistant already has keeps the entity id of its registry entry. The ``unique_id`` values are
unchanged from earlier releases, so no entity is orphaned by an upgrade.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from gateway import __version__
from gateway.config import MeterConfig, MqttConfig
from gateway.meter import type_code
from gateway.model import Identity, RegisterInfo, RegisterValue
from gateway.mqtt.topics import Topics, safe_level

MANUFACTURER = "eGauge Systems"
ENERGY_CODES: Final = ("P", "S", "var", "PQ")
ROLES: Final = ("import", "export")
EntitySlug = Callable[[str, str], str]  # (entity key, wanted slug) -> the pinned slug
_NOT_OBJECT_ID = re.compile(r"[^a-z0-9]+")
ORIGIN = {"name": "egauge-gateway", "sw_version": __version__}


@dataclass(frozen=True, slots=True)
class SensorClass:
    """How Home Assistant should treat one register's rate."""

    device_class: str | None
    unit: str | None
    precision: int | None = None
    state_class: str = "measurement"


_CLASSES: dict[str, SensorClass] = {
    "P": SensorClass("power", "W", 0),
    "V": SensorClass("voltage", "V", 1),
    "Vdc": SensorClass("voltage", "V", 1),
    "I": SensorClass("current", "A", 2),
    "Idc": SensorClass("current", "A", 2),
    "F": SensorClass("frequency", "Hz", 2),
    "S": SensorClass("apparent_power", "VA", 0),
    "var": SensorClass("reactive_power", "var", 0),
    "PQ": SensorClass("reactive_power", "var", 0),
    "T": SensorClass("temperature", "°C", 1),
    "h": SensorClass("humidity", "%", 1),
    "Pa": SensorClass("pressure", "Pa", 0),
    "Ee": SensorClass("irradiance", "W/m²", 0),
}


def sensor_class(type_code: str, unit: str) -> SensorClass:
    """The HA class of a register's rate; unknown codes keep their unit and get no class."""
    return _CLASSES.get(type_code) or SensorClass(None, unit or None)


def has_energy(reg: RegisterInfo) -> bool:
    """Power registers (real, apparent, reactive) also get an energy sensor from their
    cumulative value."""
    return reg.type_code in ENERGY_CODES


def energy_device_class(code: str) -> str | None:
    """``energy`` for registers counted in kWh; none for kVAh and kvarh (see above)."""
    return "energy" if type_code(code).cumulative_unit == "kWh" else None


def unpinned_entity(key: str, wanted: str) -> str:
    """An entity's slug without pins (for tests and throw-away plans)."""
    return wanted


def role_key(role: str, name: str) -> str:
    """The pin key of a register's import or export entity."""
    return f"{role}:{name}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One diagnostic entity of a meter (published from the poller's counters)."""

    key: str
    name: str
    component: str
    field: str | None = None  # the member of the diagnostics JSON (None: availability)
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    precision: int | None = None


DIAGNOSTICS: Final = (
    Diagnostic("online", "Online", "binary_sensor", None, "connectivity"),
    Diagnostic("data_age", "Data age", "sensor", "age", "duration", "s", "measurement", 1),
    Diagnostic("failed_polls", "Failed polls", "sensor", "failed_polls", None, None,
               "total_increasing", 0),
    Diagnostic("poll_latency", "Poll latency", "sensor", "latency_ms", "duration", "ms",
               "measurement", 1),
)


def runs_backwards(value: RegisterValue, previous: RegisterValue | None) -> bool:
    """Whether this reading shows the register running backwards (a net register)."""
    if value.rate is not None and value.rate < 0:
        return True
    return (
        previous is not None
        and value.cumulative is not None
        and previous.cumulative is not None
        and value.cumulative < previous.cumulative
    )


def energy_state_class(reg: RegisterInfo, net: bool) -> str:
    """``total_increasing`` only for a register that cannot run backwards (see above)."""
    minus_formula = reg.formula is not None and "-" in reg.formula
    if reg.name.endswith("+") and not minus_formula and not net:
        return "total_increasing"
    return "total"


def expire_after(meter: MeterConfig, mqtt: MqttConfig) -> int:
    """Seconds without an update after which HA shows an entity as unavailable: the
    configured value, or the longest normal silence (heartbeat or offline detection) plus
    two poll intervals and 10 s of margin."""
    if mqtt.homeassistant.expire_after_s is not None:
        return mqtt.homeassistant.expire_after_s
    silence = mqtt.max_silence_s if mqtt.per_register_topics else meter.poll_interval_s
    slowest = max(silence, meter.poll_interval_s * meter.offline_after)
    return math.ceil(slowest + 2 * meter.poll_interval_s + 10)


def entity_object_id(meter: str, slug: str) -> str:
    """The object id (the part after ``sensor.``) of the entity of ``slug`` of ``meter``:
    ``<meter>_<slug>`` in Home Assistant's alphabet (``-`` and runs of ``_`` become one
    ``_``), as Home Assistant itself would reduce it."""
    return _NOT_OBJECT_ID.sub("_", f"{meter}_{slug}".lower()).strip("_")


def entity_ids(component: str, object_id: str) -> dict[str, object]:
    """The discovery keys that choose an entity's id, for old and new Home Assistant."""
    return {"object_id": object_id, "default_entity_id": f"{component}.{object_id}"}


def energy_slug(slug: str) -> str:
    """The slug of a power register's energy sensor in entity ids (``<slug>_energy``)."""
    return f"{slug}_energy"


def bridge_identifier(gateway_id: str) -> str:
    return f"egauge_gateway_{safe_level(gateway_id)}"


def meter_identifier(identity: Identity) -> str:
    return f"egauge_{safe_level(identity.serial)}"


def _encode(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def bridge_config(topics: Topics, gateway_id: str, configuration_url: str | None = None
                  ) -> tuple[str, bytes]:
    """The gateway's own device: a connectivity sensor on ``bridge/state``;
    ``configuration_url``: the status page, when the HTTP endpoint is on and reachable."""
    ident = bridge_identifier(gateway_id)
    device: dict[str, object] = {
        "identifiers": [ident],
        "name": f"eGauge gateway {gateway_id}",
        "manufacturer": "egauge-gateway",
        "model": "egauge-gateway",
        "sw_version": __version__,
    }
    if configuration_url is not None:
        device["configuration_url"] = configuration_url
    payload: dict[str, object] = {
        "name": "Bridge",
        "unique_id": f"{ident}_bridge",
        **entity_ids("binary_sensor", entity_object_id(ident, "bridge")),
        "state_topic": topics.bridge_state,
        "payload_on": "online",
        "payload_off": "offline",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": device,
        "origin": ORIGIN,
    }
    return topics.discovery("binary_sensor", ident, "bridge"), _encode(payload)


@dataclass(frozen=True, slots=True)
class MeterDiscovery:
    """Everything needed to describe one meter to Home Assistant."""

    topics: Topics
    gateway_id: str
    meter: MeterConfig
    identity: Identity
    expire_after_s: int
    per_register_topics: bool

    def device(self) -> dict[str, object]:
        ident = self.identity
        return {
            "identifiers": [meter_identifier(ident)],
            "name": ident.hostname or self.meter.id,
            "manufacturer": MANUFACTURER,
            "model": ident.model,
            "serial_number": ident.serial,
            "sw_version": ident.firmware,
            "configuration_url": self.meter.url,
            "via_device": bridge_identifier(self.gateway_id),
        }

    def configs(
        self, registers: Iterable[tuple[RegisterInfo, str]], net: frozenset[str] = frozenset(),
        counted: frozenset[str] = frozenset(), entity_slug: EntitySlug = unpinned_entity,
    ) -> dict[str, bytes]:
        """Discovery topic -> retained payload for every sensor of these (register, slug)s:
        ``counted`` names the registers with energy counters, ``entity_slug`` gives the pinned
        slugs of the entities of their own (counters, diagnostics)."""
        node = meter_identifier(self.identity)
        meter = self.meter.id
        common: dict[str, object] = {
            "availability": [
                {"topic": self.topics.bridge_state},
                {"topic": self.topics.availability(meter)},
            ],
            "availability_mode": "all",
            "payload_available": "online",
            "payload_not_available": "offline",
            "expire_after": self.expire_after_s,
            "device": self.device(),
            "origin": ORIGIN,
        }
        out: dict[str, bytes] = {}
        for reg, slug in registers:
            cls = sensor_class(reg.type_code, type_code(reg.type_code).unit)
            if self.per_register_topics:
                source = {"state_topic": self.topics.register(meter, slug),
                          "value_template": "{{ value }}"}
            else:
                source = {"state_topic": self.topics.state(meter),
                          "value_template": f"{{{{ value_json.registers['{slug}'].rate }}}}"}
            out[self.topics.discovery("sensor", node, slug)] = _encode(
                {"name": reg.name, "unique_id": f"{node}_{slug}",
                 **entity_ids("sensor", entity_object_id(meter, slug)), **source,
                 **_class_fields(cls), **common}
            )
            unit = type_code(reg.type_code).cumulative_unit
            if has_energy(reg):
                energy = SensorClass(energy_device_class(reg.type_code), unit, 3,
                                     energy_state_class(reg, reg.name in net))
                out[self.topics.discovery("sensor", node, f"{slug}-energy")] = _encode(
                    {"name": f"{reg.name} energy", "unique_id": f"{node}_{slug}-energy",
                     **entity_ids("sensor", entity_object_id(meter, energy_slug(slug))),
                     **self._source(slug, "energy", "cumulative"),
                     **_class_fields(energy), **common}
                )
            if reg.name in counted:
                total = SensorClass(energy_device_class(reg.type_code), unit or None, 3,
                                    "total_increasing")
                for role in ROLES:
                    own = entity_slug(role_key(role, reg.name), f"{slug}_{role}")
                    out[self.topics.discovery("sensor", node, f"{slug}-{role}")] = _encode(
                        {"name": f"{reg.name} {role}", "unique_id": f"{node}_{slug}-{role}",
                         **entity_ids("sensor", entity_object_id(meter, own)),
                         **self._source(slug, role, role), **_class_fields(total), **common})
        return out

    def _source(self, slug: str, part: str, member: str) -> dict[str, object]:
        """Where a register's further value comes from: its own topic, or the state JSON."""
        meter = self.meter.id
        if self.per_register_topics:
            return {"state_topic": self.topics.register_part(meter, slug, part),
                    "value_template": "{{ value }}"}
        return {"state_topic": self.topics.state(meter),  # ['import']: a Jinja keyword
                "value_template": f"{{{{ value_json.registers['{slug}']['{member}'] }}}}"}

    def diagnostics(self, entity_slug: EntitySlug = unpinned_entity) -> dict[str, bytes]:
        """The meter's diagnostic entities: available while the bridge is (they report on
        the meter also while it is offline)."""
        meter = self.meter.id
        node = meter_identifier(self.identity)
        shared: dict[str, object] = {
            "availability": [{"topic": self.topics.bridge_state}],
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": self.device(),
            "origin": ORIGIN,
        }
        out: dict[str, bytes] = {}
        for d in DIAGNOSTICS:
            own = entity_slug(f"diagnostic:{d.key}", d.key)
            payload: dict[str, object] = {
                "name": d.name, "unique_id": f"{node}_diagnostic-{d.key}",
                **entity_ids(d.component, entity_object_id(meter, own)),
                "entity_category": "diagnostic",
            }
            if d.field is None:
                payload.update({"state_topic": self.topics.availability(meter),
                                "payload_on": "online", "payload_off": "offline"})
            else:
                payload.update({"state_topic": self.topics.diagnostics(meter),
                                "value_template": f"{{{{ value_json.{d.field} }}}}"})
            if d.state_class is not None:
                payload["state_class"] = d.state_class
            if d.device_class is not None:
                payload["device_class"] = d.device_class
            if d.unit is not None:
                payload["unit_of_measurement"] = d.unit
            if d.precision is not None:
                payload["suggested_display_precision"] = d.precision
            payload.update(shared)
            out[self.topics.discovery(d.component, node, f"diagnostic-{d.key}")] = \
                _encode(payload)
        return out


def _class_fields(cls: SensorClass) -> dict[str, object]:
    fields: dict[str, object] = {"state_class": cls.state_class}
    if cls.device_class is not None:
        fields["device_class"] = cls.device_class
    if cls.unit is not None:
        fields["unit_of_measurement"] = cls.unit
    if cls.precision is not None:
        fields["suggested_display_precision"] = cls.precision
    return fields


def alert_event_config(d: MeterDiscovery) -> tuple[str, bytes]:
    """The meter's alert log as a Home Assistant ``event`` entity (MQTT event platform,
    HA 2023.8+): every message on ``<base>/<meter>/alert`` carries ``event_type`` "alert";
    its other members (id, name, detail, prio, count, first, last) become attributes."""
    node = meter_identifier(d.identity)
    meter = d.meter.id
    payload: dict[str, object] = {
        "name": "Alert", "unique_id": f"{node}_alert",
        **entity_ids("event", entity_object_id(meter, "alert")),
        "state_topic": d.topics.alert(meter),
        "event_types": ["alert"], "icon": "mdi:alert",
        "availability": [{"topic": d.topics.bridge_state},
                         {"topic": d.topics.availability(meter)}],
        "availability_mode": "all", "payload_available": "online",
        "payload_not_available": "offline", "device": d.device(), "origin": ORIGIN,
    }
    return d.topics.discovery("event", node, "alert"), _encode(payload)
