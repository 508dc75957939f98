"""``/api/ctrl``: one PRM3 relay module behind the meter (egauge-webapi §7).

The ``relay`` interface offers ``close(u n)``, ``open(u n)`` (relay index n, 0-based),
``mask(u mask)`` (close set bits, open clear ones), ``close_mask(u mask)`` (close set bits
only), ``open_mask(u mask)`` (open set bits only), all returning nothing, and
``state() -> u`` (bit n set: relay n closed). ``POST /ctrl/call`` checks the device and the
signature and answers a tid; ``GET /ctrl/call/{tid}`` answers ``EAGAIN: Call is pending.``
until ``pending_polls`` polls and ``pending_s`` seconds have passed, then runs the method
once and keeps answering its result. The 10 s minimum relay switching time is not modelled.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.simulator.reply import QueryError
from gateway.simulator.tree import Json

PENDING = "EAGAIN: Call is pending."
_KEEP_CALLS = 256


def _method(name: str, arg: str, out: str, doc: str) -> dict[str, Json]:
    return {"name": name, "in": "u" if arg else "", "in_names": [arg] if arg else [],
            "out": out, "doc": doc}


RELAY_METHODS: list[dict[str, Json]] = [
    _method("close", "n", "", "Close the relay with index <arg>n</arg>."),
    _method("open", "n", "", "Open the relay with index <arg>n</arg>."),
    _method("mask", "mask", "", "Close the relays whose bit is set in <arg>mask</arg> "
            "and open all others."),
    _method("close_mask", "mask", "", "Close the relays whose bit is set in <arg>mask</arg>."),
    _method("open_mask", "mask", "", "Open the relays whose bit is set in <arg>mask</arg>."),
    _method("state", "", "u", "Return the relay states as a mask (bit n set: relay n closed)."),
]


@dataclass(slots=True)
class _Call:
    method: str
    args: list[int]
    started: float
    polls: int = 0
    reply: dict[str, Json] | None = None


class Controller:
    """The control-capable devices of one meter and the calls made to them."""

    def __init__(self, device_sn: str = "00000007", relay_count: int = 3,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.relay_count = relay_count
        self.relay_mask = 0
        self.pending_polls = 1
        self.pending_s = 0.0
        self._monotonic = monotonic
        self._device: dict[str, Json] = {
            "path": ["net.egauge.slowd", "USB1", "1"], "name": "prm3", "mfg": "eGauge",
            "model": "PRM3", "sn": device_sn, "prot": "Modbus", "link": "serial",
            "quality": "0", "interface": ["relay"],
        }
        self._calls: OrderedDict[int, _Call] = OrderedDict()
        self._next_tid = (1 << 32) + secrets.randbelow(1 << 20)

    def devices(self, attrs: Json = None) -> list[dict[str, Json]]:
        """The devices matching ``attrs`` (strings compare without case; ``interface`` may
        be a list that must all be present; ``index`` picks the n-th match)."""
        if attrs is None:
            return [dict(self._device)]
        if not isinstance(attrs, dict):
            raise QueryError("Invalid attrs: expected a JSON object.")
        found = [d for d in [self._device] if self._matches(d, attrs)]
        index = attrs.get("index")
        if index is not None:
            if not isinstance(index, int) or index < 0:
                raise QueryError("Invalid attrs: index must be a whole number.")
            found = found[index : index + 1]
        return [dict(d) for d in found]

    @staticmethod
    def _matches(device: dict[str, Json], attrs: dict[str, Json]) -> bool:
        for key, want in attrs.items():
            if key == "index":
                continue
            have = device.get(key)
            if key == "interface":
                wanted = want if isinstance(want, list) else [want]
                if not all(str(w).lower() in [str(i).lower() for i in have or []]
                           for w in wanted):
                    return False
            elif isinstance(want, str) and isinstance(have, str):
                if want.lower() != have.lower():
                    return False
            elif want != have:
                return False
        return True

    def interfaces(self) -> dict[str, Json]:
        return {"relay": {"method": [dict(m) for m in RELAY_METHODS]}}

    def call(self, body: Json) -> int:
        """Start a call; answers its tid or raises QueryError."""
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            raise QueryError("Invalid call: expected {attrs, method, args}.")
        if not self.devices(body.get("attrs", {})):
            raise QueryError("ENODEV: No matching device.")
        iface, _, name = body["method"].rpartition(".")
        spec = next((m for m in RELAY_METHODS if m["name"] == name), None)
        if iface not in ("", "relay") or spec is None:
            raise QueryError(f"ENOENT: Unknown method {body['method']!r}.")
        args = body.get("args", [])
        if not isinstance(args, list) or len(args) != len(spec["in_names"] or []) or not all(
                isinstance(a, int) and not isinstance(a, bool) and 0 <= a < 1 << 32
                for a in args):
            raise QueryError(f"EINVAL: {name} takes ({spec['in']}) arguments.")
        tid = self._next_tid
        self._next_tid += 1
        self._calls[tid] = _Call(name, args, self._monotonic())
        while len(self._calls) > _KEEP_CALLS:
            self._calls.popitem(last=False)
        return tid

    def poll(self, tid: int) -> dict[str, Json]:
        """The reply to ``GET /ctrl/call/{tid}``."""
        call = self._calls.get(tid)
        if call is None:
            return {"error": f"ENOENT: Unknown call {tid}."}
        if call.reply is None:
            call.polls += 1
            waited = self._monotonic() - call.started
            if call.polls <= self.pending_polls or waited < self.pending_s:
                return {"error": PENDING}
            call.reply = self._run(call.method, call.args)
        return dict(call.reply)

    def _run(self, method: str, args: list[int]) -> dict[str, Json]:
        full = (1 << self.relay_count) - 1
        if method in ("close", "open"):
            if args[0] >= self.relay_count:
                return {"error": f"EINVAL: No relay {args[0]}."}
            bit = 1 << args[0]
            self.relay_mask = self.relay_mask | bit if method == "close" else self.relay_mask & ~bit
        elif method == "mask":
            self.relay_mask = args[0] & full
        elif method == "close_mask":
            self.relay_mask |= args[0] & full
        elif method == "open_mask":
            self.relay_mask &= ~args[0] & full
        else:
            return {"result": self.relay_mask}
        return {}
