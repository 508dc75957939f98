"""The ``alerts:`` key of a meter: its alert log (``/log/alert``) as MQTT events.

``alerts: {enabled: false, interval_s: 60}``: with ``enabled`` the gateway reads the meter's
alert log every ``interval_s`` and publishes each new entry once on
``<base>/<meter>/alert`` (see :mod:`gateway.alerts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.config.schema import Section

KEYS: Final = ("enabled", "interval_s")
MIN_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    enabled: bool = False
    interval_s: float = 60.0  # between two reads of /log/alert


def parse_alerts(s: Section | None) -> AlertsConfig:
    """``alerts: {enabled, interval_s}`` (``interval_s`` at least 1)."""
    d = AlertsConfig()
    if s is None:
        return d
    interval = s.number("interval_s", d.interval_s, MIN_INTERVAL_S, inclusive=True)
    return AlertsConfig(enabled=s.boolean("enabled", d.enabled), interval_s=interval)
