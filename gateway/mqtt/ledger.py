"""What the gateway left retained on the broker, remembered across restarts.

A small JSON file in ``gateway.state_dir`` lists, per meter, every retained topic the gateway
published (availability, state, device, register values, discovery configs) and the registers
seen running backwards. When a meter disappears from the configuration, the next start clears
its topics with empty retained payloads. Writes are atomic (:mod:`gateway.support.statefile`);
a file that cannot be read or written is logged and never stops the gateway.

On an event loop, changes are written together :data:`SAVE_DELAY_S` after the first of them
(and at :meth:`RetainedLedger.flush`): at start-up every meter records itself, and with
hundreds of meters a write per change (of a file of some 1.6 kB per meter) would block the
loop for seconds. A crash within that delay forgets the newest topics, which are then not
cleared should their meter be removed while the gateway is down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path

import structlog

from gateway.support import write_json

log = structlog.get_logger(__name__)

FILE_NAME = "mqtt-retained.json"
SAVE_DELAY_S = 1.0


class RetainedLedger:
    """Per meter: the retained topics published and the registers known to run backwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # sorted tuples, not sets: a tuple of a meter's 60 topics takes a fifth of the memory
        self._topics: dict[str, tuple[str, ...]] = {}
        self._net: dict[str, tuple[str, ...]] = {}
        self._pending: asyncio.TimerHandle | None = None

    def load(self) -> None:
        """Read the file; a missing file is an empty ledger, a broken one is logged."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            meters = data["meters"]
            for meter, entry in meters.items():
                self._topics[str(meter)] = _sorted(str(t) for t in entry.get("topics", ()))
                self._net[str(meter)] = _sorted(str(n) for n in entry.get("net", ()))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ledger_unreadable", path=str(self.path), error=repr(exc))
            self._topics.clear()
            self._net.clear()

    def meters(self) -> tuple[str, ...]:
        return tuple(self._topics)

    def topics(self, meter: str) -> frozenset[str]:
        return frozenset(self._topics.get(meter, ()))

    def net(self, meter: str) -> frozenset[str]:
        return frozenset(self._net.get(meter, ()))

    def record(self, meter: str, topics: Iterable[str], net: Iterable[str] = ()) -> None:
        """Remember ``meter``'s retained topics and net registers (written only on change).
        The ledger keeps the strings it is given (those of the meter's plan), not equal
        copies read from the file."""
        new_topics, new_net = _sorted(topics), _sorted(net)
        changed = self._topics.get(meter) != new_topics or self._net.get(meter) != new_net
        self._topics[meter] = new_topics
        self._net[meter] = new_net
        if changed:
            self._save_soon()

    def forget(self, meter: str) -> None:
        if self._topics.pop(meter, None) is not None or self._net.pop(meter, None) is not None:
            self._save_soon()

    def flush(self) -> None:
        """Write what is still waiting for the delayed write, now."""
        if self._pending is not None:
            self._pending.cancel()
            self._write_pending()

    def _save_soon(self) -> None:
        if self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing would write it later
            self._save()
            return
        self._pending = loop.call_later(SAVE_DELAY_S, self._write_pending)

    def _write_pending(self) -> None:
        self._pending = None
        self._save()

    def _save(self) -> None:
        data = {
            "version": 1,
            "meters": {
                m: {"topics": list(self._topics[m]), "net": list(self._net.get(m, ()))}
                for m in sorted(self._topics)
            },
        }
        try:
            write_json(self.path, data, compact=True)  # 1.6 kB a meter: encoded in C
        except OSError as exc:
            log.warning("ledger_write_failed", path=str(self.path), error=repr(exc))


def _sorted(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(items)))
