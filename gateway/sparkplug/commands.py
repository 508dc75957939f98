"""Writes from a Sparkplug host: NCMD and DCMD metrics as what the gateway does about them.

NCMD: ``Node Control/Rebirth`` = true asks for a full rebirth. DCMD (writable metrics of a
meter's device):

- ``Device Control/Rebirth`` = true: that device's DBIRTH again;
- ``Device Control/Reboot`` = true: the ``reboot`` action;
- ``Relays/<n>`` = true / false: the ``relay`` action, relay n closed / open.

Actions go to the command router (the meter's ``commands.allow``, cool-downs, lane, audit);
the metric's properties ``dry_run`` (Boolean) and ``transaction`` (String) are handed on as
the request fields of the same names. A value of the wrong type is handed on as it is, so the
router refuses it (``invalid``) and audits the attempt. A write of false to a momentary
control (Rebirth, Reboot) does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.sparkplug import metrics as m
from gateway.sparkplug.payload import Metric, Value

REBIRTH: Final = "rebirth"  # a device write that asks for the device's DBIRTH


@dataclass(frozen=True, slots=True)
class Write:
    """One DCMD metric as a router request; ``relay`` and ``closed`` name what a relay
    write switches (to report its new state once it succeeded)."""

    action: str
    fields: dict[str, Any]
    relay: int | None = None
    closed: bool | None = None


def _shown(value: Value) -> bool | int | float | str | None:
    """A received value as a request field (bytes are not JSON)."""
    return f"<{len(value)} bytes>" if isinstance(value, bytes) else value


def _envelope(metric: Metric) -> dict[str, Any]:
    """The request fields taken from the metric's properties."""
    fields: dict[str, Any] = {}
    for prop in metric.properties:
        if prop.key in ("dry_run", "transaction"):
            fields[prop.key] = _shown(prop.value)
    return fields


def relay_number(name: str) -> int | None:
    """n of ``Relays/<n>`` (None for any other name)."""
    if not name.startswith(m.RELAY_PREFIX):
        return None
    digits = name[len(m.RELAY_PREFIX):]
    return int(digits) if digits.isdigit() and len(digits) <= 3 else None


def device_write(name: str, metric: Metric) -> Write | str | None:
    """What a DCMD metric named ``name`` asks for: a :class:`Write`, :data:`REBIRTH`, or
    None (nothing to do: false to a momentary control, or a metric that is not writable)."""
    value = metric.value
    if name == m.DEVICE_REBIRTH:
        return REBIRTH if value is True else None
    if name == m.DEVICE_REBOOT:
        if value is False:
            return None
        fields = _envelope(metric)
        if value is not True:
            fields["value"] = _shown(value)  # refused by the router: reboot takes no value
        return Write("reboot", fields)
    relay = relay_number(name)
    if relay is None:
        return None
    state = {True: "closed", False: "open"}.get(value) if isinstance(value, bool) \
        else _shown(value)
    closed = value if isinstance(value, bool) else None
    return Write("relay", {"relay": relay, "state": state, **_envelope(metric)}, relay, closed)


def asks_rebirth(name: str, metric: Metric) -> bool:
    """Whether an NCMD metric is ``Node Control/Rebirth`` = true."""
    return name == m.NODE_REBIRTH and metric.value is True


@dataclass(slots=True)
class Throttle:
    """At most one log event per key and ``interval_s``; counts what it held back."""

    interval_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def allow(self, key: str) -> int | None:
        """None when an event for ``key`` was logged within the interval (it is counted);
        otherwise how many were held back since the last one that was logged."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
