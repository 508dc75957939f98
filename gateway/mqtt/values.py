"""The per-register topics of a meter: each register's rate on ``<base>/<meter>/register/<slug>``
and below it the energy of power registers (``/energy``) and the energy counters
(``/import``, ``/export``), as plain numbers rounded to their quanta.

A value is sent when it changed -- a rate by at least ``mqtt.deadband`` of its type code --
and ``mqtt.min_interval_s`` passed since the topic's last message, or when ``max_silence_s``
passed (the heartbeat); so a Home Assistant recorder gets at most one row per interval and
entity, while the state JSON keeps every poll (docs/ENERGY.md, "Precision and volume").
The values of one poll go to the connection as one batch at ``mqtt.register_qos`` (at QoS 0,
one entry of paho's queue).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import MqttConfig
from gateway.meter import quantized
from gateway.model import Reading, RegisterValue
from gateway.mqtt.connection import MqttConnection
from gateway.mqtt.plan import MeterPlan, number


class RegisterValues:
    """Publishes the per-register topics of every meter plan, where due."""

    def __init__(self, cfg: MqttConfig, connection: MqttConnection,
                 clock: Callable[[], float]) -> None:
        self._cfg = cfg
        self._conn = connection
        self._clock = clock

    def publish(self, plan: MeterPlan, reading: Reading) -> None:
        """Each register's rate, and its energy and counters below it, where due."""
        cfg = self._cfg
        now = self._clock()
        last_rate, last_sent, topics = plan.last_rate, plan.last_sent, plan.register_topics
        parts = plan.parts_of
        soonest = min(cfg.min_interval_s, cfg.max_silence_s)
        due: list[tuple[str, bytes]] = []
        part_sent = plan.part_sent
        for v in reading.registers:
            name = v.name
            since = now - last_sent.get(name, -1e18)
            if since >= soonest and name in topics:  # else not due whatever its value
                rate = quantized(v.type_code, v.rate)
                if rate is not None and (since >= cfg.max_silence_s or (
                        since >= cfg.min_interval_s and _moved(
                            rate, last_rate.get(name), cfg.deadband_for(v.type_code)))):
                    due.append((topics[name], number(rate).encode()))
                    last_rate[name] = rate
                    last_sent[name] = now
            if parts:
                for part, key, topic in parts.get(name, ()):
                    since = now - part_sent.get(key, -1e18)
                    if since < soonest:  # not due whatever its value: not rounded either
                        continue
                    value = _part(v, part)
                    if value is None:
                        continue
                    payload = number(value)
                    if since >= cfg.max_silence_s or payload != plan.last_part.get(key):
                        due.append((topic, payload.encode()))
                        plan.last_part[key] = payload
                        part_sent[key] = now
        if due:
            self._conn.publish_values(due, cfg.register_qos, cfg.retain)

    def republish(self, plan: MeterPlan) -> None:
        """Every value last sent, again (a reconnect)."""
        if not self._cfg.per_register_topics:
            return
        cfg, now, topics = self._cfg, self._clock(), plan.register_topics
        due: list[tuple[str, bytes]] = []
        for name, rate in plan.last_rate.items():
            topic = topics.get(name)
            if topic is not None:
                due.append((topic, number(rate).encode()))
                plan.last_sent[name] = now
        for key, payload in plan.last_part.items():
            topic = plan.part_topics.get(key)
            if topic is not None:
                due.append((topic, payload.encode()))
                plan.part_sent[key] = now
        if due:
            self._conn.publish_values(due, cfg.register_qos, cfg.retain)


def _moved(value: float, last: float | None, deadband: float) -> bool:
    """Whether a rate differs enough from the one last sent to be sent again."""
    if last is None:
        return True
    return abs(value - last) >= deadband if deadband > 0 else value != last


def _part(v: RegisterValue, part: str) -> float | int | None:
    """One of a register's values below its rate topic, rounded: its energy (power
    registers) or one of its counters."""
    code = v.type_code
    if part == "energy":
        return quantized(code, v.cumulative, cumulative=True)
    energy = v.energy
    if energy is None:
        return None
    value = energy.import_value if part == "import" else energy.export_value
    return quantized(code, value, cumulative=True)
