"""The grammar of ``commands.allow`` entries: what an operator may let through to a meter.

=====================  ====================================================================
entry                  allows
=====================  ====================================================================
``reboot``             ``POST /cmd/reboot`` (the ``reboot`` action)
``relay``              the ``relay`` action (``/ctrl/call`` on a relay device)
``ctrl/devices``       ``GET /ctrl/device`` (listing control-capable devices)
``ctrl:METHOD``        ``ctrl/call`` of that method, e.g. ``ctrl:relay.close``
``cmd:NAME``           ``POST /cmd/NAME``, e.g. ``cmd:clear``
``config:/PATH``       reading *and* writing ``/config/PATH`` and everything below it
``config-read:/PATH``  reading ``/config/PATH`` and everything below it
``capture``            waveform captures (``capture``, ``capture/info``: ``/capture``)
``ctid``               reading the stored CTid sensor information (``ctid/info``)
``ctid-scan``          ``ctid/scan``: identifying a CTid sensor (suspends measurement)
``ctid-flash``         ``ctid/flash``: flashing a sensor's LED (suspends measurement)
``log:NAME``           ``log/get`` of that log: ``system``, ``kernel``, ``alert``,
                       ``lua/SCRIPT``; ``log:lua`` covers every script
``alert-ack``          ``alert/ack``: acknowledging entries of the alert log
``lua-read:NAME``      ``lua/var/get`` of that Lua variable; ``lua-read:*`` of every one
``lua:NAME``           ``lua/var/get`` and ``lua/var/set`` of that variable (``lua:*``: all)
``api-read:/PATH``     ``api/get``: any GET at ``/api/PATH`` and below it (not ``/auth``)
=====================  ====================================================================
"""

from __future__ import annotations

import difflib
import re
from typing import Final, NamedTuple

KINDS: Final = ("reboot", "relay", "ctrl/devices", "ctrl", "cmd", "config", "config-read",
                 "capture", "ctid", "ctid-scan", "ctid-flash", "log", "alert-ack", "lua",
                 "lua-read", "api-read")
_SIMPLE: Final = frozenset({"reboot", "relay", "ctrl/devices", "capture", "ctid", "ctid-scan",
                            "ctid-flash", "alert-ack"})
_CMD_NAME: Final = re.compile(r"[a-z][a-z0-9-]*")
_METHOD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SEGMENT: Final = re.compile(r"[^/\s?#*]+")
LUA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SCRIPT_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
LOGS: Final = ("system", "kernel", "alert", "lua")
EXPECTED: Final = ("reboot, relay, ctrl/devices, ctrl:METHOD, cmd:NAME, config:/PATH, "
                   "config-read:/PATH, capture, ctid, ctid-scan, ctid-flash, log:NAME, "
                   "alert-ack, lua:NAME, lua-read:NAME or api-read:/PATH")


class AllowEntry(NamedTuple):
    """One parsed entry: ``kind`` is one of :data:`KINDS`; ``arg`` is "" for the simple ones."""

    kind: str
    arg: str


def parse(entry: str) -> AllowEntry | str:
    """The parsed entry, or the message saying why it is not one."""
    if entry in _SIMPLE:
        return AllowEntry(entry, "")
    kind, sep, arg = entry.partition(":")
    if not sep or kind not in KINDS or kind in _SIMPLE:
        words = sorted(_SIMPLE) if not sep else [k for k in KINDS if k not in _SIMPLE]
        hint = difflib.get_close_matches(kind, words, n=1)
        if hint:
            return f"unknown command entry (did you mean {hint[0] + sep!r}?)"
        return f"unknown command entry; expected {EXPECTED}"
    if kind == "cmd" and not _CMD_NAME.fullmatch(arg):
        return f"cmd:NAME needs a name matching {_CMD_NAME.pattern}"
    if kind == "ctrl" and not _METHOD.fullmatch(arg):
        return "ctrl:METHOD needs a method name such as relay.close"
    if kind in ("config", "config-read") and not is_config_path(arg):
        return f"{kind}:/PATH needs a path such as /net/hostname (no empty, . or .. segments)"
    if kind == "log" and not is_log_name(arg):
        return "log:NAME needs system, kernel, alert, lua or lua/SCRIPT"
    if kind in ("lua", "lua-read") and arg != "*" and not LUA_NAME.fullmatch(arg):
        return f"{kind}:NAME needs a Lua variable name such as tariff_rate, or *"
    if kind == "api-read":
        if not is_config_path(arg):
            return "api-read:/PATH needs a path such as /providers/push (no empty, . or .. " \
                   "segments)"
        if is_auth_path(arg):
            return "api-read:/PATH cannot cover /auth (its GETs log in and out)"
    return AllowEntry(kind, arg)


def is_log_name(name: str) -> bool:
    """``system``, ``kernel``, ``alert``, ``lua`` or ``lua/SCRIPT``."""
    if name in LOGS:
        return True
    head, sep, script = name.partition("/")
    return head == "lua" and bool(sep) and bool(SCRIPT_NAME.fullmatch(script))


def is_auth_path(path: str) -> bool:
    """Whether a WebAPI path is ``/auth`` or below it (never read through ``api/get``)."""
    return path == "/auth" or path.startswith("/auth/")


def is_config_path(path: str) -> bool:
    """``/`` or ``/a/b``: no empty, ``.`` or ``..`` segments, no whitespace, ``?``, ``#``, ``*``."""
    if path == "/":
        return True
    if not path.startswith("/"):
        return False
    segments = path[1:].split("/")
    return all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)


def covers(entry_path: str, path: str) -> bool:
    """Whether an entry's config path covers ``path`` (the same node or one below it)."""
    if entry_path == "/":
        return True
    return path == entry_path or path.startswith(entry_path + "/")
