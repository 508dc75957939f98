"""Readiness: is the gateway doing its job right now?

Ready means: not shutting down; every enabled output is up (MQTT connected to the broker,
the Modbus server listening); and at least one meter was polled successfully within three of
its poll intervals (an instance or worker left without meters by the split has nothing to
poll and needs none). Otherwise the reasons say what is missing, one line each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import MeterConfig
from gateway.core import MeterState
from gateway.observe.view import GatewayView

FRESH_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]
    fresh_meters: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "reasons": list(self.reasons),
                "fresh_meters": list(self.fresh_meters)}


def last_success(state: MeterState) -> float | None:
    """Wall-clock time of the meter's latest good poll (when the reply arrived)."""
    reading = state.reading
    if reading is None:
        return None
    return reading.received or reading.ts


def is_fresh(state: MeterState, meter: MeterConfig, now: float) -> bool:
    when = last_success(state)
    return when is not None and now - when <= FRESH_INTERVALS * meter.poll_interval_s


def readiness(view: GatewayView, now: float) -> Readiness:
    reasons: list[str] = []
    if view.stopping:
        reasons.append("gateway: shutting down")
    cfg = view.config
    mqtt = view.mqtt
    if cfg.mqtt.enabled and not (mqtt is not None and mqtt.connected):
        reasons.append(f"mqtt: not connected to {cfg.mqtt.host}:{cfg.mqtt.port}")
    spb = view.sparkplug
    if cfg.sparkplug.enabled and not (spb is not None and spb.connected):
        reasons.append(f"sparkplug: not connected to {cfg.mqtt.host}:{cfg.mqtt.port}")
    if cfg.modbus.enabled and not view.modbus_listening:
        reasons.append(f"modbus: not listening on {cfg.modbus.host}:{cfg.modbus.port}")
    meters = view.meters()
    fresh = tuple(m.config.id for m in meters if is_fresh(m.state, m.config, now))
    if meters and not fresh:
        reasons.append(f"meters: none polled successfully within {FRESH_INTERVALS} poll "
                       "intervals")
    return Readiness(not reasons, tuple(reasons), fresh)
