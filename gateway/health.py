"""Readiness: is the gateway doing its job right now?

Ready means: not shutting down; every enabled output is up (MQTT connected to the broker,
the Modbus server listening); and at least one meter was polled successfully within three of
its poll intervals. Otherwise the reasons say what is missing, one line each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config import MeterConfig
from gateway.hub import MeterState

if TYPE_CHECKING:
    from gateway.app import App

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


def readiness(app: App, now: float) -> Readiness:
    reasons: list[str] = []
    if app.stopping:
        reasons.append("gateway: shutting down")
    cfg = app.config
    if cfg.mqtt.enabled and not (app.mqtt is not None and app.mqtt.connection.connected):
        reasons.append(f"mqtt: not connected to {cfg.mqtt.host}:{cfg.mqtt.port}")
    if cfg.modbus.enabled and not (app.modbus is not None and app.modbus.listening):
        reasons.append(f"modbus: not listening on {cfg.modbus.host}:{cfg.modbus.port}")
    fresh = tuple(m.id for m in cfg.meters if is_fresh(app.hub.meter(m.id), m, now))
    if not fresh:
        reasons.append(f"meters: none polled successfully within {FRESH_INTERVALS} poll "
                       "intervals")
    return Readiness(not reasons, tuple(reasons), fresh)
