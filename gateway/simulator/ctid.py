"""``/api/ctid``: CTid sensor information of a simulated meter (egauge-webapi §8).

Ports 1..4 have CTid sensors attached (``sensors``); port 5 has a plain CT, whose scan
never finds anything. The meter starts with the info of ports 1..4 stored, as if scanned
at installation.

- ``GET /ctid`` -> ``{"info": [...]}``; ``GET /ctid/{port}`` -> the stored object or ``{}``.
- ``POST /ctid/{port}`` ``{"op": "scan"|"flash", "tid": <1..2^32-1>, "polarity": "+"|"-"}``
  -> ``{"status": "OK"}`` and the operation starts (replacing one in progress).
  ``GET /ctid/{port}?tid=<tid>`` answers the stored object without ``tid`` while the scan
  runs; its ``scan_polls``-th poll completes the scan: the sensor's table with ``port``,
  ``polarity`` and ``tid``, which is also stored. A flash runs until ``POST /ctid/stop``
  (or 30 minutes). While a scan or flash runs, ``/local`` reports ``ctid: active`` and
  its rates read zero.
- ``PUT /ctid/{port}`` stores an object, ``PUT /ctid {"info": [...]}`` replaces them all;
  ``DELETE /ctid/{port}`` deletes one, ``DELETE /ctid`` all. Everything but GET needs the
  save right (checked by the router).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.simulator.reply import QueryError
from gateway.simulator.tree import Json

PORTS = 30
FLASH_LIMIT_S = 1800.0
_OK: dict[str, Json] = {"status": "OK"}


def _sensor_table(port: int) -> dict[str, Json]:
    """The CTid table of the (AC, Magnelab-made) sensor on ``port``."""
    rated = (200.0, 200.0, 100.0, 100.0)[port - 1]
    return {"version": 4, "mfgid": 1, "model": f"SCT-{'1250' if rated > 100 else '0750'}",
            "sn": 7_100_000 + port, "k": 0, "rsrc": 0, "rload": 0,
            "params": {"size": 1.25 if rated > 100 else 0.75, "i": rated, "v": 0.33333,
                       "a": 1.2, "tv": 0.0, "ta": 0.0, "bias_voltage": 0,
                       "cal": {"1.5": {"v": 0.11, "a": -0.3}, "5": {"v": 0.02, "a": -0.1},
                               "15": {"v": 0.0, "a": 0.0}}}}


@dataclass(slots=True)
class _Operation:
    op: str
    port: int
    tid: int
    polarity: str
    started: float
    polls: int = 0


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= PORTS:
        raise QueryError(f"Invalid port number: {text!r}.")
    return int(text)


class CtidService:
    """The CTid state of one meter."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.scan_polls = 2
        self.sensors: dict[int, dict[str, Json]] = {p: _sensor_table(p) for p in range(1, 5)}
        self.stored: dict[int, dict[str, Json]] = {
            p: {"port": p, "polarity": "+", **copy.deepcopy(t)} for p, t in self.sensors.items()}
        self.operation: _Operation | None = None
        self._done: tuple[int, int, dict[str, Json]] | None = None  # tid, port, result

    @property
    def state(self) -> str:
        """``idle`` or ``active`` (what ``/local`` reports as ``ctid``)."""
        op = self.operation
        if op is not None and op.op == "flash" and \
                self._monotonic() - op.started >= FLASH_LIMIT_S:
            self.operation = None
        return "idle" if self.operation is None else "active"

    def stop(self) -> None:
        self.operation = None

    def handle(self, method: str, path: Sequence[str], params: dict[str, str],
               body: Json) -> dict[str, Json]:
        """``path`` is below ``/ctid``."""
        if len(path) > 1:
            raise QueryError(f"Unknown path: /ctid/{'/'.join(path)}.")
        if path and path[0] == "stop":
            if method != "POST":
                raise QueryError("Invalid request: POST /ctid/stop.")
            self.stop()
            return dict(_OK)
        port = _port(path[0]) if path else None
        if method == "GET":
            return self._get(port, params)
        if method == "POST" and port is not None:
            return self._start(port, body)
        if method == "PUT":
            return self._put(port, body)
        if method == "DELETE":
            if port is None:
                self.stored.clear()
            else:
                self.stored.pop(port, None)
            return dict(_OK)
        raise QueryError("Invalid request: POST needs a port.")

    def _get(self, port: int | None, params: dict[str, str]) -> dict[str, Json]:
        if port is None:
            return {"info": [copy.deepcopy(self.stored[p]) for p in sorted(self.stored)]}
        if "tid" in params:
            tid_text = params["tid"]
            if not tid_text.isdigit():
                raise QueryError(f"Invalid tid: {tid_text!r}.")
            result = self._poll(port, int(tid_text))
            if result is not None:
                return result
        return copy.deepcopy(self.stored.get(port, {}))

    def _poll(self, port: int, tid: int) -> dict[str, Json] | None:
        if self._done is not None and self._done[:2] == (tid, port):
            return copy.deepcopy(self._done[2])
        op = self.operation
        if op is None or op.op != "scan" or (op.tid, op.port) != (tid, port):
            return None
        op.polls += 1
        if op.polls < self.scan_polls or port not in self.sensors:
            return None
        found = {"port": port, "polarity": op.polarity, **copy.deepcopy(self.sensors[port])}
        self.stored[port] = copy.deepcopy(found)
        self.operation = None
        self._done = (tid, port, {**found, "tid": tid})
        return copy.deepcopy(self._done[2])

    def _start(self, port: int, body: Json) -> dict[str, Json]:
        if not isinstance(body, dict):
            raise QueryError("Invalid CTid request: expected {op, tid, polarity}.")
        op, tid, polarity = body.get("op"), body.get("tid"), body.get("polarity", "+")
        if op not in ("scan", "flash"):
            raise QueryError('Invalid CTid request: op must be "scan" or "flash".')
        if isinstance(tid, bool) or not isinstance(tid, int) or not 0 < tid < 1 << 32:
            raise QueryError("Invalid CTid request: tid must be a number from 1 to 2^32-1.")
        if polarity not in ("+", "-"):
            raise QueryError('Invalid CTid request: polarity must be "+" or "-".')
        self.operation = _Operation(op, port, tid, polarity, self._monotonic())
        return dict(_OK)

    def _put(self, port: int | None, body: Json) -> dict[str, Json]:
        if port is not None:
            self.stored[port] = self._checked(body, port)
            return dict(_OK)
        infos = body.get("info") if isinstance(body, dict) else None
        if not isinstance(infos, list):
            raise QueryError('Invalid CTid info: expected {"info": [...]}.')
        checked: dict[int, dict[str, Json]] = {}
        for info in infos:
            number = info.get("port") if isinstance(info, dict) else None
            if isinstance(number, bool) or not isinstance(number, int):
                raise QueryError("Invalid CTid info: every entry needs a port.")
            checked[number] = self._checked(info, number)
        self.stored = checked
        return dict(_OK)

    @staticmethod
    def _checked(info: Json, port: int) -> dict[str, Json]:
        if not isinstance(info, dict):
            raise QueryError("Invalid CTid info: expected an object.")
        if not 1 <= port <= PORTS or info.get("port", port) != port:
            raise QueryError(f"Invalid CTid info: port must be {port}.")
        if info.get("polarity", "+") not in ("+", "-"):
            raise QueryError('Invalid CTid info: polarity must be "+" or "-".')
        return {**copy.deepcopy(info), "port": port}
