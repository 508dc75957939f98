"""Primary host awareness: with ``sparkplug.primary_host_id`` the births wait for the host.

Sparkplug 3.0.0 (§5.3, §4.2.4): the primary host publishes a retained JSON STATE on
``spBv1.0/STATE/<host_id>``, ``{"online": true|false, "timestamp": <ms>}``; a STATE whose
timestamp is older than the newest one seen is stale and ignored. Hosts built for Sparkplug B
before 3.0 publish plain ``ONLINE`` / ``OFFLINE`` on ``STATE/<host_id>``; that form (which has
no timestamp) is accepted on either topic and always counts as the newest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Final

MAX_STATE: Final = 4096  # bytes


@dataclass(frozen=True, slots=True)
class HostState:
    online: bool
    timestamp: int | None = None  # ms; None for the plain (pre-3.0) form


def parse_state(payload: bytes) -> HostState | None:
    """The STATE in ``payload``; None when it is not one (too long, not JSON, no boolean
    ``online``, a timestamp that is not a number)."""
    if len(payload) > MAX_STATE:
        return None
    plain = payload.strip().upper()
    if plain in (b"ONLINE", b"OFFLINE"):
        return HostState(plain == b"ONLINE")
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("online"), bool):
        return None
    stamp = data.get("timestamp")
    if stamp is None:
        return HostState(data["online"])
    if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not math.isfinite(stamp):
        return None
    return HostState(data["online"], int(stamp))


class PrimaryHost:
    """Whether the primary host ``host_id`` is online, from the STATE messages seen."""

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.online = False
        self._newest: int | None = None

    def update(self, state: HostState) -> bool:
        """Apply one STATE; True when it changed whether the host is online (a stale one
        changes nothing)."""
        if state.timestamp is not None:
            if self._newest is not None and state.timestamp < self._newest:
                return False
            self._newest = state.timestamp
        changed = state.online != self.online
        self.online = state.online
        return changed
