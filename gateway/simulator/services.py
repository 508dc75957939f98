"""Routing of the services beyond the core ones: ``/capture``, ``/ctid``, ``/log``, ``/lua``
and ``/providers`` (the router has already checked the token and the privileges)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.simulator.providers import providers
from gateway.simulator.reply import QueryError, Reply, error_reply, json_reply, status_ok
from gateway.simulator.tree import Json
from gateway.support import Request

if TYPE_CHECKING:
    from gateway.simulator.meter import SimMeter

SERVICES = frozenset({"capture", "ctid", "log", "lua", "providers"})
_NOT_ALLOWED = error_reply("Method not allowed.", 405)


def handle(meter: SimMeter, req: Request, service: str, path: Sequence[str],
           body: Json) -> Reply:
    """Answer ``req`` for ``service``; ``path`` is below the service."""
    params = dict(req.query)
    if service == "capture":
        if req.method != "GET":
            return _NOT_ALLOWED
        if path:
            return error_reply("Not Found.", 404)
        return json_reply(meter.capturer.handle(req.query, meter.now()))
    if service == "ctid":
        return json_reply(meter.ctid.handle(req.method, path, params, body))
    if service == "log":
        return json_reply(meter.journal.handle(req.method, path, params, body))
    if service == "lua":
        if req.method == "GET":
            return json_reply({"result": meter.lua.get(path, params)})
        if req.method not in ("PUT", "POST"):
            return _NOT_ALLOWED
        if not req.body:
            raise QueryError("Missing request body.")
        meter.lua.write(path, body)
        return status_ok()
    if service == "providers":
        if req.method != "GET":
            return _NOT_ALLOWED
        return json_reply(providers(path, meter.internet_access))
    return error_reply("Not Found.", 404)
