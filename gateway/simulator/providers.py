"""``/api/providers``: the service providers a meter offers (egauge-webapi §8).

``GET /providers/alert`` and ``/providers/push`` -> ``{"reply": {"providers": [{name,
control, version?}]}}``; ``/providers/tariff`` lists tariff providers the same way and
``/providers/tariff/{idx}`` answers ``{"reply": <that provider>}`` (the shape of the indexed
form is not attested). The real meter asks eGauge's servers, so with
``SimMeter.internet_access`` off every request answers ``{"error": "No Internet access."}``.
The simulated catalogue names hosts under ``example.net``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from gateway.simulator.reply import QueryError
from gateway.simulator.tree import Json

NO_INTERNET = "No Internet access."
CATALOGUE: dict[str, list[dict[str, Json]]] = {
    "alert": [{"name": "Mail", "control": "smtp"},
              {"name": "Sim Alerts", "control": "https://alerts.example.net/sim",
               "version": "1.2"}],
    "push": [{"name": "Sim Cloud", "control": "https://push.example.net/sim", "version": "2.0"},
             {"name": "Custom", "control": "uri"}],
    "tariff": [{"name": "Flat rate", "control": "https://tariffs.example.net/flat",
                "version": "1.0"},
               {"name": "Time of use", "control": "https://tariffs.example.net/tou",
                "version": "1.1"}],
}


def providers(path: Sequence[str], online: bool) -> dict[str, Json]:
    """The reply for ``path`` below ``/providers``."""
    if not path or path[0] not in CATALOGUE or len(path) > 2 or (
            len(path) == 2 and path[0] != "tariff"):
        raise QueryError(f"Unknown path: /providers/{'/'.join(path)}.")
    if not online:
        raise QueryError(NO_INTERNET)
    listed = CATALOGUE[path[0]]
    if len(path) == 1:
        return {"reply": {"providers": copy.deepcopy(listed)}}
    idx = path[1]
    if not idx.isdigit() or int(idx) >= len(listed):
        raise QueryError(f"Unknown tariff provider: {idx!r}.")
    return {"reply": copy.deepcopy(listed[int(idx)])}
