"""Meter alerts as events: new entries of each meter's alert log (``/log/alert``),
published once each (``<base>/<meter>/alert``), remembered across restarts.

The face: :class:`AlertWatch` (a hub sink and a service), what it needs of the MQTT output
(:class:`AlertOutput`) and of a meter (:class:`AlertLane`), and :data:`STATE_FILE`.
Module behind it: ``watch``."""

from gateway.alerts.watch import STATE_FILE, AlertLane, AlertOutput, AlertWatch, alert_event

__all__ = ["STATE_FILE", "AlertLane", "AlertOutput", "AlertWatch", "alert_event"]
