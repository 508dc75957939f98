"""What the gateway left retained on the broker, remembered across restarts.

A small JSON file in ``gateway.state_dir`` lists, per meter, every retained topic the gateway
published (availability, state, device, register values, discovery configs) and the registers
seen running backwards. When a meter disappears from the configuration, the next start clears
its topics with empty retained payloads. Writes are atomic (temporary file + rename); a file
that cannot be read or written is logged and never stops the gateway.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

FILE_NAME = "mqtt-retained.json"


class RetainedLedger:
    """Per meter: the retained topics published and the registers known to run backwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._topics: dict[str, frozenset[str]] = {}
        self._net: dict[str, frozenset[str]] = {}

    def load(self) -> None:
        """Read the file; a missing file is an empty ledger, a broken one is logged."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            meters = data["meters"]
            for meter, entry in meters.items():
                self._topics[str(meter)] = frozenset(str(t) for t in entry.get("topics", ()))
                self._net[str(meter)] = frozenset(str(n) for n in entry.get("net", ()))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ledger_unreadable", path=str(self.path), error=repr(exc))
            self._topics.clear()
            self._net.clear()

    def meters(self) -> tuple[str, ...]:
        return tuple(self._topics)

    def topics(self, meter: str) -> frozenset[str]:
        return self._topics.get(meter, frozenset())

    def net(self, meter: str) -> frozenset[str]:
        return self._net.get(meter, frozenset())

    def record(self, meter: str, topics: Iterable[str], net: Iterable[str] = ()) -> None:
        """Remember ``meter``'s retained topics and net registers (written only on change)."""
        new_topics, new_net = frozenset(topics), frozenset(net)
        if self._topics.get(meter) == new_topics and self._net.get(meter) == new_net:
            return
        self._topics[meter] = new_topics
        self._net[meter] = new_net
        self._save()

    def forget(self, meter: str) -> None:
        if self._topics.pop(meter, None) is not None or self._net.pop(meter, None) is not None:
            self._save()

    def _save(self) -> None:
        data = {
            "version": 1,
            "meters": {
                m: {"topics": sorted(self._topics[m]), "net": sorted(self._net.get(m, ()))}
                for m in sorted(self._topics)
            },
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".mqtt-retained-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("ledger_write_failed", path=str(self.path), error=repr(exc))
