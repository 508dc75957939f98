"""Log replies (``/log``, egauge-webapi §8) as typed values.

``GET /log/alert`` -> ``{"drops": n, "log": [{id, acked, prio, count, first, last, name,
detail, reported?}]}``: :func:`parse_alerts`. The other logs (``system``, ``kernel``,
``lua/<script>``) are ``{"log": [...]}`` of objects with ``msg`` (and ``prio``, ``ts``):
:func:`parse_entries` checks the shape and leaves the entries as the meter sent them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.meter.fields import Fields


@dataclass(frozen=True, slots=True)
class MeterAlert:
    """One entry of a meter's alert log. A repeat of an alert bumps ``count`` and ``last``
    of its entry; ``id`` tells entries apart."""

    id: int
    name: str
    detail: str
    prio: int  # 0..7, higher is more urgent
    count: int
    first: float  # Unix seconds of the first occurrence
    last: float  # ... and of the latest
    acked: bool

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "detail": self.detail, "prio": self.prio,
                "count": self.count, "first": self.first, "last": self.last,
                "acked": self.acked}


def parse_alerts(meter: str, reply: Any) -> tuple[tuple[MeterAlert, ...], int]:
    """The alert entries of a ``/log/alert`` reply (oldest id first) and its ``drops``."""
    f = Fields(meter)
    body = f.obj(reply, "body")
    drops = body.get("drops", 0)
    out = []
    for i, entry in enumerate(f.array(body.get("log"), "log")):
        where = f"log[{i}]"
        e = f.obj(entry, where)
        prio = f.integer(e.get("prio"), where + ".prio")
        if not 0 <= prio <= 7:
            raise f.error(where + ".prio", "expected a priority 0..7")
        out.append(MeterAlert(
            id=f.integer(e.get("id"), where + ".id"),
            name=f.text(e.get("name"), where + ".name"),
            detail=f.text(e.get("detail", ""), where + ".detail"),
            prio=prio,
            count=f.integer(e.get("count", 1), where + ".count"),
            first=f.stamp(e.get("first"), where + ".first"),
            last=f.stamp(e.get("last", e.get("first")), where + ".last"),
            acked=e.get("acked") is True,
        ))
    out.sort(key=lambda a: a.id)
    return tuple(out), f.integer(drops, "drops")


def parse_entries(meter: str, reply: Any) -> list[dict[str, Any]]:
    """The entries of a system, kernel or Lua log (each an object with ``msg``; a ``ts``
    timestamp string becomes a number)."""
    f = Fields(meter)
    entries = f.array(f.obj(reply, "body").get("log"), "log")
    out = []
    for i, entry in enumerate(entries):
        e = f.obj(entry, f"log[{i}]")
        f.text(e.get("msg"), f"log[{i}].msg")
        if "ts" in e:
            e = {**e, "ts": f.stamp(e["ts"], f"log[{i}].ts")}
        out.append(e)
    return out
