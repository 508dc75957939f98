"""Metric aliases and register slugs of one Edge Node, pinned in the state directory.

Sparkplug data messages name a metric by its alias alone; the births tie each alias to a
name. The gateway keeps every alias it ever gave: an alias is unique across the node and all
its devices, a metric keeps its alias across restarts, register-set changes and meters that
come and go, and a new metric gets the next number never used before (aliases start at 1).

Metric names are built from a register's slug. The slug a register got the first time is
pinned as well, so a metric name never moves to another register: not when the slug function
changes, and not when two register names of one meter give the same slug (the later one gets
``_`` and 6 hex digits of the SHA-1 of its name).

Numbers are handed out from blocks of :data:`BLOCK` reserved in the file before the first of
them is used, so the pins themselves can be written lazily (:meth:`AliasBook.save`, about once
a second while new metrics appear) and a crash before such a write still never gives a number
to a second metric: the restarted gateway continues above the reserved block. A clean stop
releases the rest of the block (``save(final=True)``).

The file (written atomically)::

    {"version": 1, "next": N, "reserved": R, "node": {metric: alias},
     "meters": {meter: {"aliases": {metric: alias}, "slugs": {register: slug}}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from gateway.errors import ConfigError
from gateway.mqtt import name_hash
from gateway.support import read_json, write_json

log = structlog.get_logger(__name__)

FILE_NAME: Final = "aliases.json"
BLOCK: Final = 1024  # alias numbers reserved at a time
_VERSION: Final = 1


@dataclass(slots=True)
class _Pins:
    aliases: dict[str, int] = field(default_factory=dict)
    slugs: dict[str, str] = field(default_factory=dict)


class AliasBook:
    """Every alias and register slug of one Edge Node (``meter`` None: the node's own)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._next = 1
        self._reserved = 1  # numbers below this are reserved in the file
        self._node = _Pins()
        self._meters: dict[str, _Pins] = {}
        self.dirty = False

    def load(self) -> None:
        """Read the pins of earlier runs. A damaged file raises :class:`ConfigError`: going
        on without it would give known aliases to other metrics."""
        try:
            data = read_json(self.path)
            if data is not None:
                self._adopt(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError([f"{self.path}: not a valid Sparkplug alias file ({exc}); it pins "
                               "the metric aliases, so repair or remove it"],
                              str(self.path)) from exc

    def _adopt(self, data: Any) -> None:
        if data["version"] != _VERSION:
            raise ValueError(f"version {data['version']!r}")
        node = _Pins({str(k): int(v) for k, v in data["node"].items()})
        meters = {
            str(meter): _Pins({str(k): int(v) for k, v in pins["aliases"].items()},
                              {str(k): str(v) for k, v in pins["slugs"].items()})
            for meter, pins in data["meters"].items()
        }
        every = [*node.aliases.values(), *(a for p in meters.values() for a in p.aliases.values())]
        if len(set(every)) != len(every) or any(a < 1 for a in every):
            raise ValueError("aliases repeat or are below 1")
        if any(len(set(p.slugs.values())) != len(p.slugs) for p in meters.values()):
            raise ValueError("two registers of a meter share a slug")
        # numbers up to the reservation may have gone out unsaved before a crash
        self._next = self._reserved = max(int(data["next"]), int(data.get("reserved", 0)),
                                          max(every, default=0) + 1)
        self._node, self._meters = node, meters

    def _pins(self, meter: str | None) -> _Pins:
        if meter is None:
            return self._node
        return self._meters.setdefault(meter, _Pins())

    def alias(self, meter: str | None, metric: str) -> int:
        """The alias of one metric of ``meter`` (or of the node), pinned the first time."""
        pins = self._pins(meter)
        alias = pins.aliases.get(metric)
        if alias is None:
            if self._next >= self._reserved:
                self._reserved = self._next + BLOCK
                try:
                    self._write()
                except OSError as exc:  # go on: the next save tries again
                    log.error("sparkplug_aliases_not_saved", path=str(self.path),
                              error=exc.strerror or str(exc))
            alias = pins.aliases[metric] = self._next
            self._next += 1
            self.dirty = True
        return alias

    def pinned_alias(self, meter: str | None, metric: str) -> int | None:
        """The alias pinned for a metric, or None (nothing is pinned by asking)."""
        pins = self._node if meter is None else self._meters.get(meter)
        return None if pins is None else pins.aliases.get(metric)

    def pinned_slug(self, meter: str, register: str) -> str | None:
        """The slug pinned for a register, or None (nothing is pinned by asking)."""
        pins = self._meters.get(meter)
        return None if pins is None else pins.slugs.get(register)

    def proposed_slug(self, meter: str, register: str, proposed: str) -> str:
        """The slug :meth:`slug` would pin for a register now, without pinning it."""
        pins = self._meters.get(meter)
        taken = set(pins.slugs.values()) if pins is not None else set()
        slug, length = proposed, 6
        while slug in taken:
            slug = f"{proposed}_{name_hash(register, length)}"
            length += 2
        return slug

    def slug(self, meter: str, register: str, proposed: str) -> str:
        """The slug of one register of ``meter``: the pinned one, or ``proposed`` (made unique
        among the meter's pinned slugs) pinned now."""
        pinned = self.pinned_slug(meter, register)
        if pinned is not None:
            return pinned
        slug = self.proposed_slug(meter, register, proposed)
        self._pins(meter).slugs[register] = slug
        self.dirty = True
        return slug

    def names(self, meter: str | None) -> dict[int, str]:
        """alias -> metric name of ``meter`` (or of the node), for received commands."""
        return {alias: name for name, alias in self._pins(meter).aliases.items()}

    def save(self, final: bool = False) -> None:
        """Write the pins when something new was pinned (``final``: and release the unused
        rest of the reserved block); OSError when that fails (kept for the next save)."""
        if final and self._reserved > self._next:
            self._reserved = self._next
            self.dirty = True
        if self.dirty:
            self._write()

    def _write(self) -> None:
        write_json(self.path, {
            "version": _VERSION, "next": self._next, "reserved": self._reserved,
            "node": self._node.aliases,
            "meters": {m: {"aliases": p.aliases, "slugs": p.slugs}
                       for m, p in self._meters.items()},
        })
        self.dirty = False
