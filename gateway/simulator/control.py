"""The simulator's own control endpoint ``/__sim__/...`` (off unless the server enables it),
for tests that run the simulator in another process.

``POST /__sim__/faults`` takes a JSON object: any of the :class:`Faults` switches, plus
``down_s`` (go off the network once this reply is sent), ``revoke_tokens``,
``expire_nonces``, ``clear`` (all switches back to off) and ``registers``:
``{"order": [names], "remove": [names], "add": [{name, type, base, amp, period_s}],
"rename": {old: new}, "retype": {name: type}}`` (renamed and retyped registers keep their
idx and did, as on a meter).
``GET /__sim__/faults`` shows the switches, ``GET /__sim__/state`` the meter's counters,
``GET /__sim__/calls`` the recorded calls (``DELETE`` forgets them).

``POST /__sim__/reboot`` ``{"downtime_s": s, "reset_cumulative": bool, "rewind_s": n}``
reboots the meter (``SimMeter.reboot``; downtime defaults to ``reboot_downtime_s``) and
answers ``{"status": "OK", "first_second": ...}``. ``POST /__sim__/alert``
``{"name", "detail", "prio"}`` raises an alert (``SimMeter.raise_alert``).
``GET /__sim__/raw?name=<register>&from=<t0>&to=<t1>`` answers the exact raw values
``{"raw": [raw(t0) .. raw(t1)], "changes": [raw(t) - raw(t-1) for t0 < t <= t1]}``
(at most 86400 seconds).
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING

from gateway.simulator import registers as regs
from gateway.simulator.faults import Faults
from gateway.simulator.registers import SimRegister
from gateway.simulator.reply import QueryError, Reply, error_reply, json_reply
from gateway.simulator.tree import Json
from gateway.simulator.wave import Wave
from gateway.support import Request

if TYPE_CHECKING:
    from gateway.simulator.meter import SimMeter

PREFIX = "/__sim__/"
_ACTIONS = ("down_s", "revoke_tokens", "expire_nonces", "registers", "clear")


def handle(meter: SimMeter, req: Request) -> Reply:
    what = req.path[len(PREFIX):]
    try:
        if what == "faults" and req.method == "POST":
            return _post_faults(meter, req)
        if what == "faults" and req.method == "GET":
            return json_reply(meter.faults.as_dict())
        if what == "state" and req.method == "GET":
            return json_reply(state(meter))
        if what == "calls" and req.method == "GET":
            return json_reply([{"method": c.method, "path": c.path, "query": c.query,
                                "body": c.body, "time": c.time, "authorized": c.authorized,
                                "status": c.status} for c in meter.calls])
        if what == "calls" and req.method == "DELETE":
            meter.clear_calls()
            return json_reply({"status": "OK"})
        if what == "reboot" and req.method == "POST":
            return _reboot(meter, _object(req))
        if what == "alert" and req.method == "POST":
            spec = _object(req)
            alert = meter.raise_alert(str(spec["name"]), str(spec.get("detail", "")),
                                      _whole(spec.get("prio", 3), "prio"))
            return json_reply({"status": "OK", "id": alert.id})
        if what == "raw" and req.method == "GET":
            return json_reply(_raw(meter, dict(req.query)))
    except (QueryError, ValueError, KeyError, TypeError) as exc:
        return error_reply(f"Invalid control request: {exc}", 400)
    return error_reply("Not Found.", 404)


def state(meter: SimMeter) -> dict[str, Json]:
    return {"serial": meter.serial, "logins": meter.logins, "calls": meter.recorder.total,
            "relay_mask": meter.relay_mask, "down": meter.is_down,
            "registers": [{"name": r.name, "idx": r.idx, "type": r.type_code}
                          for r in meter.registers]}


def _object(req: Request) -> dict[str, Json]:
    try:
        changes = json.loads(req.body or b"{}")
    except ValueError as exc:
        raise QueryError("body is not JSON") from exc
    if not isinstance(changes, dict):
        raise QueryError("body must be a JSON object")
    return changes


def _whole(value: Json, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueryError(f"{what} must be a whole number")
    return value


def _reboot(meter: SimMeter, spec: dict[str, Json]) -> Reply:
    unknown = sorted(set(spec) - {"downtime_s", "reset_cumulative", "rewind_s"})
    if unknown:
        raise QueryError(f"unknown reboot option {unknown[0]!r}")
    downtime = spec.get("downtime_s", meter.reboot_downtime_s)
    if isinstance(downtime, bool) or not isinstance(downtime, (int, float)) or downtime < 0:
        raise QueryError("downtime_s must be a number >= 0")
    rewind = spec.get("rewind_s")
    first = meter.reboot_state(reset_cumulative=bool(spec.get("reset_cumulative", False)),
                               rewind_s=None if rewind is None else _whole(rewind, "rewind_s"))
    reply = json_reply({"status": "OK", "first_second": first})
    if downtime > 0:
        return Reply(reply.status, reply.body, down_after_s=float(downtime))
    return reply


def _raw(meter: SimMeter, params: dict[str, str]) -> dict[str, Json]:
    name = params["name"]
    meter.register(name)  # KeyError for an unknown register
    start, end = int(params["from"]), int(params["to"])
    if not 0 <= end - start <= 86400:
        raise QueryError("need from <= to, at most 86400 seconds apart")
    raw = [meter.raw(name, t) for t in range(start, end + 1)]
    return {"name": name, "from": start, "to": end, "raw": raw,
            "changes": [b - a for a, b in itertools.pairwise(raw)]}


def _post_faults(meter: SimMeter, req: Request) -> Reply:
    changes = _object(req)
    new_registers = _planned(meter, changes["registers"]) if "registers" in changes else None
    switches = {k: v for k, v in changes.items() if k not in _ACTIONS}
    Faults().update(switches)  # check everything before changing anything
    if changes.get("clear"):
        meter.faults.clear()
    meter.faults.update(switches)
    if new_registers is not None:
        meter.set_registers(new_registers)
    if changes.get("revoke_tokens"):
        meter.revoke_tokens()
    if changes.get("expire_nonces"):
        meter.expire_nonces()
    down = changes.get("down_s")
    reply = json_reply({"status": "OK", "faults": meter.faults.as_dict()})
    if isinstance(down, (int, float)) and down > 0:
        return Reply(reply.status, reply.body, down_after_s=float(down))
    return reply


def _planned(meter: SimMeter, spec: Json) -> list[SimRegister]:
    if not isinstance(spec, dict):
        raise QueryError("registers must be an object")
    planned = meter.registers
    if "remove" in spec:
        planned = regs.without(planned, spec["remove"])
    for new in spec.get("add", []):
        wave = Wave(float(new.get("base", 0.0)), float(new.get("amp", 0.0)),
                    float(new.get("period_s", 600.0)))
        planned = regs.with_added(planned, str(new["name"]), str(new.get("type", "P")), wave)
    if "rename" in spec:
        planned = regs.renamed(planned, _names(spec["rename"]))
    if "retype" in spec:
        planned = regs.retyped(planned, _names(spec["retype"]))
    if "order" in spec:
        planned = regs.reordered(planned, spec["order"])
    regs.check_register_set(planned)
    return planned


def _names(spec: Json) -> dict[str, str]:
    if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
        raise QueryError("rename and retype must map names to strings")
    return {str(k): str(v) for k, v in spec.items()}
