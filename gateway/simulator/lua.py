"""``/api/lua``: the Lua variables of a simulated meter (egauge-webapi §8).

``GET /lua/var`` -> ``{"result": {name: {"value": "<JSON text>", "desc": "..."}}}``; every
sub-path is addressable (``/lua/var/{name}``, ``/lua/var/{name}/value``) and ``filter`` /
``max-depth`` work as on other trees. ``PUT`` or ``POST /lua/var/{name}/value`` with a JSON
string body whose content is itself JSON (``"42"``, ``"\\"eco\\""``) sets a variable; the
router demands the save right for writes. The running script owns ``uptime_min`` and
rewrites it every second, so a write to it does not stick, as on a real meter whose script
sets a variable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from gateway.simulator import tree
from gateway.simulator.reply import QueryError
from gateway.simulator.tree import Json

SCRIPTED = "uptime_min"


class LuaVars:
    """The Lua variables of one meter; ``uptime_s`` gives the script's running time."""

    def __init__(self, uptime_s: Callable[[], float]) -> None:
        self._uptime_s = uptime_s
        self.values: dict[str, str] = {"tariff_rate": "0.21", "mode": '"auto"',
                                       "setpoint": '{"low": 18.5, "high": 23}',
                                       SCRIPTED: "0"}
        self.descs: dict[str, str] = {
            "tariff_rate": "Energy price per kWh.", "mode": "Load-control mode.",
            "setpoint": "Heating band in degrees Celsius.",
            SCRIPTED: "Minutes since the script started (set by the script).",
        }

    def tree(self) -> dict[str, Json]:
        values = {**self.values, SCRIPTED: json.dumps(int(self._uptime_s() // 60))}
        return {"var": {n: {"value": values[n], "desc": self.descs[n]} for n in values}}

    def get(self, path: Sequence[str], params: dict[str, str]) -> Json:
        return tree.shape(tree.lookup(self.tree(), path), params)

    def write(self, path: Sequence[str], body: Json) -> None:
        where = "/" + "/".join(path)
        if len(path) != 3 or path[0] != "var" or path[2] != "value":
            tree.lookup(self.tree(), path)  # an unknown path says so
            raise QueryError(f"Read-only: {where}.")
        if path[1] not in self.values:
            raise QueryError(f"Unknown path: /var/{path[1]}.")
        if not isinstance(body, str):
            raise QueryError(f"Invalid value for {where}: expected a JSON-encoded string.")
        try:
            json.loads(body)
        except ValueError as exc:
            raise QueryError(f"Invalid value for {where}: not JSON: {body!r}.") from exc
        self.values[path[1]] = body
