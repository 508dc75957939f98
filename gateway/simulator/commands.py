"""``/api/cmd`` and ``/api/ctrl`` of a simulated meter (egauge-webapi §6, §7).

``/cmd/reboot`` answers ``{"status": "OK"}`` and then takes the meter off the network for
``reboot_downtime_s`` (its counters reset as ``reboot_resets_cumulative`` and
``reboot_rewind_s`` say, see ``SimMeter.reboot_state``);
``/cmd/clear`` takes ``"excess"`` or ``"web_cache"``; ``/cmd/set-time`` takes a timestamp
string (or null); the long operations (update, activate, test-email, test-remote) answer a
token; the rest answer ``{"status": "OK"}`` without doing anything.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.simulator import tree
from gateway.simulator.reply import QueryError, Reply, error_reply, json_reply, status_ok
from gateway.simulator.tree import Json

if TYPE_CHECKING:
    from gateway.simulator.meter import SimMeter

STUBS = frozenset({"cancel", "db", "factory-restore", "homeplug", "wlan"})
TOKEN_COMMANDS = frozenset({"activate", "test-email", "test-remote"})


def command(meter: SimMeter, name: str, body: Json) -> Reply:
    if name == "reboot":
        meter.reboot_state(reset_cumulative=meter.reboot_resets_cumulative,
                           rewind_s=meter.reboot_rewind_s)
        ok = status_ok()
        return Reply(ok.status, ok.body, down_after_s=meter.reboot_downtime_s)
    if name == "clear":
        if body not in ("excess", "web_cache"):
            raise QueryError('Invalid argument: expected "excess" or "web_cache".')
        return status_ok()
    if name == "set-time":
        if body is not None:
            try:
                meter.set_time(float(str(body)))
            except ValueError as exc:
                raise QueryError("Invalid argument: expected a timestamp string.") from exc
        return status_ok()
    if name == "update":
        action = body.get("action") if isinstance(body, dict) else None
        if action == "list":
            return json_reply({"version": "4.7.3", "minimum": "4.1.2"})
        if action == "install":
            return json_reply({"token": secrets.token_hex(16)})
        raise QueryError('Invalid argument: action must be "list" or "install".')
    if name in TOKEN_COMMANDS:
        return json_reply({"token": secrets.token_hex(16)})
    if name in STUBS:
        return status_ok()
    return error_reply(f"Unknown command: {name}.")


def ctrl(meter: SimMeter, method: str, path: Sequence[str],
         params: dict[str, str], body: Json) -> Reply:
    """``path`` is below ``/ctrl``."""
    controller = meter.controller
    head = path[0] if path else ""
    if head == "device" and method == "GET" and len(path) == 1:
        attrs: Json = None
        if "attrs" in params:
            try:
                attrs = json.loads(params["attrs"])
            except ValueError as exc:
                raise QueryError("Invalid attrs: not JSON.") from exc
        return json_reply({"result": controller.devices(attrs)})
    if head == "interface" and method == "GET":
        return json_reply({"result": tree.shape(tree.lookup(controller.interfaces(), path[1:]),
                                                params)})
    if head == "call" and method == "POST" and len(path) == 1:
        return json_reply({"result": {"tid": controller.call(body)}})
    if head == "call" and method == "GET" and len(path) == 2:
        if not path[1].isdigit():
            raise QueryError(f"Invalid call id: {path[1]!r}.")
        return json_reply(controller.poll(int(path[1])))
    if head in ("device", "interface", "call"):
        return error_reply("Method not allowed.", 405)
    return error_reply("Not Found.", 404)
