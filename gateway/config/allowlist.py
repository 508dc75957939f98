"""The grammar of ``commands.allow`` entries: what an operator may let through to a meter.

====================  =====================================================================
entry                 allows
====================  =====================================================================
``reboot``            ``POST /cmd/reboot`` (the ``reboot`` action)
``relay``             the ``relay`` action (``/ctrl/call`` on a relay device)
``ctrl/devices``      ``GET /ctrl/device`` (listing control-capable devices)
``ctrl:METHOD``       ``ctrl/call`` of that method, e.g. ``ctrl:relay.close``
``cmd:NAME``          ``POST /cmd/NAME``, e.g. ``cmd:clear``
``config:/PATH``      reading *and* writing ``/config/PATH`` and everything below it
``config-read:/PATH`` reading ``/config/PATH`` and everything below it
====================  =====================================================================

Reading the configuration needs an entry too (``config-read:`` or ``config:``): parts of it
(push targets, remote devices, user lists) are not meant for everyone who can publish on the
broker. ``config:/`` and ``config-read:/`` cover the whole tree.
"""

from __future__ import annotations

import difflib
import re
from typing import Final, NamedTuple

KINDS: Final = ("reboot", "relay", "ctrl/devices", "ctrl", "cmd", "config", "config-read")
_SIMPLE: Final = frozenset({"reboot", "relay", "ctrl/devices"})
_CMD_NAME: Final = re.compile(r"[a-z][a-z0-9-]*")
_METHOD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SEGMENT: Final = re.compile(r"[^/\s?#*]+")
EXPECTED: Final = ("reboot, relay, ctrl/devices, ctrl:METHOD, cmd:NAME, config:/PATH "
                   "or config-read:/PATH")


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
    return AllowEntry(kind, arg)


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
