"""``/api/log``: the system, kernel and Lua logs and the alert log of a simulated meter
(egauge-webapi §8; the router demands the save right for all of it).

- ``GET /log/system`` -> ``{"log": [{"msg"}]}``: a few lines per boot.
- ``GET /log/kernel?after=<ts>`` -> ``{"log": [{"prio", "ts", "msg"}]}``, entries newer than
  ``after`` (``ts`` a timestamp string).
- ``GET /log/lua/{script}?after=<ts>``: the script ``main`` logs ``tick <n>`` every 60 s of
  the meter's clock since boot (the newest 100 lines).
- ``GET /log/alert`` -> ``{"drops": n, "log": [{id, acked, prio, count, first, last, name,
  detail, reported}]}``, filtered by ``after=<ts>`` (``last`` newer than it), ``acked``
  (``1``/``true``/bare: acknowledged only, ``0``/``false``: unacknowledged only),
  ``ids=<id,id,...>`` and ``min_prio=<0..7>`` (priority at least that). ``POST`` with
  ``{"ids": [...]}`` (or a bare list; no body: all) acknowledges; ``DELETE`` (optionally
  ``?ids=``) removes. An alert that occurs again bumps ``count`` and ``last`` of its entry
  (same name, detail and priority) and makes it unacknowledged.

Alerts appear by themselves: ``Periodic alert`` (priority 2) occurs every ``period_s`` of
the meter's clock after the meter started (0: never). :meth:`Journal.raise_alert` raises
one now. At most :data:`MAX_ALERTS` entries are kept; older ones count in ``drops``.
The parameters' spelling and semantics beyond their names are not attested (see the docs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.simulator.reply import QueryError
from gateway.simulator.tree import Json

MAX_ALERTS = 64
PERIODIC = ("Periodic alert", "The simulator's clock-driven alert.", 2)
LUA_TICK_S = 60
LUA_LINES = 100
_OK: dict[str, Json] = {"status": "OK"}


@dataclass(slots=True)
class Alert:
    id: int
    name: str
    detail: str
    prio: int
    first: float
    last: float
    count: int = 1
    acked: bool = False

    def as_json(self) -> dict[str, Json]:
        return {"id": self.id, "acked": self.acked, "prio": self.prio, "count": self.count,
                "first": f"{self.first:.3f}", "last": f"{self.last:.3f}", "name": self.name,
                "detail": self.detail, "reported": False}


def _stamp(params: dict[str, str], key: str) -> float:
    text = params.get(key, "")
    if not text:
        return -math.inf
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise QueryError(f"Invalid {key}: {text!r}.")
    return value


def _ids(text: str) -> set[int]:
    parts = text.split(",")
    if not all(p.strip().isdigit() for p in parts):
        raise QueryError(f"Invalid ids: {text!r}.")
    return {int(p) for p in parts}


def _check(params: dict[str, str], known: set[str]) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise QueryError(f"Invalid query option: {unknown[0]}.")


class Journal:
    """The logs of one meter; ``now`` is the meter's clock."""

    def __init__(self, now: Callable[[], float], serial: str, firmware: str, kernel: str,
                 period_s: float = 3600.0, booted_at: float | None = None) -> None:
        self._now = now
        self.serial, self.firmware, self.kernel = serial, firmware, kernel
        self.period_s = period_s
        self.started = now()
        self._periodic_seen = 0
        self.alerts: list[Alert] = []
        self.drops = 0
        self._next_id = 1
        self.system: list[str] = []
        self.kernel_log: list[tuple[int, float, str]] = []
        self.boot_time = self.started if booted_at is None else booted_at
        self.booted(self.boot_time, "general reset")

    # -- events ------------------------------------------------------------------------
    def booted(self, t: float, reason: str) -> None:
        self.boot_time = t
        self.system.append(f"{self.serial}: firmware {self.firmware} started ({reason})")
        self.system.append(f"{self.serial}: database opened, 1-second level cleared")
        for dt, msg in ((0.0, f"Linux version {self.kernel}"), (0.4, "eth0: link up"),
                        (1.1, "egauge: measurement started")):
            self.kernel_log.append((6, t + dt, msg))

    def raise_alert(self, name: str, detail: str = "", prio: int = 3,
                    at: float | None = None, times: int = 1) -> Alert:
        """Record ``times`` occurrences of an alert (now, or at ``at``)."""
        if not name:
            raise ValueError("an alert needs a name")
        if isinstance(prio, bool) or not isinstance(prio, int) or not 0 <= prio <= 7:
            raise ValueError("prio must be a whole number from 0 to 7")
        when = self._now() if at is None else at
        for alert in self.alerts:
            if (alert.name, alert.detail, alert.prio) == (name, detail, prio):
                alert.count += times
                alert.last = max(alert.last, when)
                alert.acked = False
                return alert
        alert = Alert(self._next_id, name, detail, prio, when, when, times)
        self._next_id += 1
        self.alerts.append(alert)
        if len(self.alerts) > MAX_ALERTS:
            del self.alerts[0]
            self.drops += 1
        return alert

    def _catch_up(self) -> None:
        """Record the periodic alert's occurrences up to now."""
        if self.period_s <= 0:
            return
        due = math.floor((self._now() - self.started) / self.period_s)
        if due > self._periodic_seen:
            name, detail, prio = PERIODIC
            alert = self.raise_alert(name, detail, prio,
                                     at=self.started + due * self.period_s,
                                     times=due - self._periodic_seen)
            if alert.count == due - self._periodic_seen:  # a new entry: its first occurrence
                alert.first = self.started + (self._periodic_seen + 1) * self.period_s
            self._periodic_seen = due

    def current(self) -> list[Alert]:
        """The alert log now (the clock-driven occurrences included), oldest first."""
        self._catch_up()
        return list(self.alerts)

    # -- the service -------------------------------------------------------------------
    def handle(self, method: str, path: Sequence[str], params: dict[str, str],
               body: Json) -> dict[str, Json]:
        """``path`` is below ``/log``."""
        what = path[0] if path else ""
        if what == "alert" and len(path) == 1:
            return self._alert(method, params, body)
        if method != "GET":
            raise QueryError(f"Invalid request: {method} /log/{'/'.join(path)}.")
        if what == "system" and len(path) == 1:
            _check(params, set())
            return {"log": [{"msg": m} for m in self.system]}
        if what == "kernel" and len(path) == 1:
            _check(params, {"after"})
            after = _stamp(params, "after")
            return {"log": [{"prio": p, "ts": f"{t:.6f}", "msg": m}
                            for p, t, m in self.kernel_log if t > after]}
        if what == "lua" and len(path) == 2:
            _check(params, {"after"})
            return {"log": self._lua(path[1], _stamp(params, "after"))}
        raise QueryError(f"Unknown path: /log/{'/'.join(path)}.")

    def _lua(self, script: str, after: float) -> list[dict[str, Json]]:
        if script != "main":
            raise QueryError(f"Unknown script: {script!r}.")
        first = math.floor(self.boot_time / LUA_TICK_S) + 1
        last = math.floor(self._now() / LUA_TICK_S)
        lowest = max(first, last - LUA_LINES + 1)
        if math.isfinite(after):
            lowest = max(lowest, math.floor(after / LUA_TICK_S) + 1)
        return [{"prio": 6, "ts": f"{k * LUA_TICK_S:.6f}", "msg": f"tick {k - first + 1}"}
                for k in range(lowest, last + 1)]

    def _alert(self, method: str, params: dict[str, str], body: Json) -> dict[str, Json]:
        self._catch_up()
        if method == "GET":
            return {"drops": self.drops, "log": [a.as_json() for a in self._chosen(params)]}
        if method == "POST":
            _check(params, set())
            wanted = body.get("ids") if isinstance(body, dict) else body
            for alert in self._by_ids(wanted):
                alert.acked = True
            return dict(_OK)
        if method == "DELETE":
            _check(params, {"ids"})
            gone = {a.id for a in self._by_ids(sorted(_ids(params["ids"])))} \
                if "ids" in params else {a.id for a in self.alerts}
            self.alerts = [a for a in self.alerts if a.id not in gone]
            return dict(_OK)
        raise QueryError(f"Invalid request: {method} /log/alert.")

    def _by_ids(self, wanted: Json) -> list[Alert]:
        if wanted is None:
            return list(self.alerts)
        if not isinstance(wanted, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in wanted):
            raise QueryError('Invalid alert acknowledgement: expected {"ids": [id, ...]}.')
        known = {a.id: a for a in self.alerts}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise QueryError(f"Unknown alert id: {missing[0]}.")
        return [known[i] for i in wanted]

    def _chosen(self, params: dict[str, str]) -> list[Alert]:
        _check(params, {"after", "acked", "ids", "min_prio"})
        after = _stamp(params, "after")
        chosen = [a for a in self.alerts if a.last > after]
        if "acked" in params:
            flag = params["acked"].lower()
            if flag not in ("", "1", "true", "0", "false"):
                raise QueryError(f"Invalid acked: {params['acked']!r}.")
            chosen = [a for a in chosen if a.acked == (flag in ("", "1", "true"))]
        if "ids" in params:
            ids = _ids(params["ids"])
            chosen = [a for a in chosen if a.id in ids]
        if "min_prio" in params:
            text = params["min_prio"]
            if not text.isdigit() or int(text) > 7:
                raise QueryError(f"Invalid min_prio: {text!r}.")
            chosen = [a for a in chosen if a.prio >= int(text)]
        return chosen
