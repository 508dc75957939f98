"""What a meter allows: a :class:`Policy` built from its ``commands.allow`` entries (grammar
in :mod:`gateway.config.allowlist`). A request needs exactly one permission, a :class:`Need`;
the policy grants it or not. An empty policy grants nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from gateway.config import allowlist
from gateway.errors import ConfigError


class Need(NamedTuple):
    """The permission one request needs: ``kind`` as in :data:`gateway.config.allowlist.KINDS`
    (``config`` means writing, ``config-read`` reading) and its argument."""

    kind: str
    arg: str = ""

    def __str__(self) -> str:
        if not self.arg:
            return self.kind
        return f"{self.kind}:{self.arg}"


class Policy:
    """The parsed ``commands.allow`` list of one meter."""

    __slots__ = ("_entries",)

    def __init__(self, allow: Iterable[str] = ()) -> None:
        entries: list[allowlist.AllowEntry] = []
        problems: list[str] = []
        for text in allow:
            parsed = allowlist.parse(text)
            if isinstance(parsed, str):
                problems.append(f"commands.allow entry {text!r}: {parsed}")
            else:
                entries.append(parsed)
        if problems:
            raise ConfigError(problems)
        self._entries = tuple(entries)

    def __repr__(self) -> str:
        return f"Policy({[str(Need(*e)) for e in self._entries]!r})"

    def allows(self, need: Need) -> bool:
        """Whether some entry grants ``need``."""
        return any(_grants(entry, need) for entry in self._entries)


def _grants(entry: allowlist.AllowEntry, need: Need) -> bool:
    if need.kind == "config-read":
        return entry.kind in ("config", "config-read") and allowlist.covers(entry.arg, need.arg)
    if need.kind == "config":
        return entry.kind == "config" and allowlist.covers(entry.arg, need.arg)
    if need.kind == "api-read":
        return entry.kind == "api-read" and allowlist.covers(entry.arg, need.arg)
    if need.kind in ("lua", "lua-read"):
        kinds = ("lua", "lua-read") if need.kind == "lua-read" else ("lua",)
        return entry.kind in kinds and entry.arg in (need.arg, "*")
    if need.kind == "log":  # log:lua covers every script's log
        return entry.kind == "log" and (
            entry.arg == need.arg or (entry.arg == "lua" and need.arg.startswith("lua/")))
    return entry.kind == need.kind and entry.arg == need.arg
