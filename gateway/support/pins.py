"""Pin files: what each register name of a meter was given the first time it was seen, kept in
``gateway.state_dir`` so that it never moves.

One format for every kind of pin -- the Modbus slots (``<state_dir>/modbus/<meter>.json``) and
the MQTT slugs (``<state_dir>/slugs/<meter>.json``) -- one register per line, so that a file
reads well in a diff and can be edited by hand while the gateway is stopped::

    {"version": 2, "kind": "slugs", "meter": "main", "meta": {"serial": "G12345"}, "pins": {
      "Grid": {"slug": "grid", "type": "P", "idx": 3, "did": 0, "present": true},
      "Panel A/B": {"slug": "panel_a_b", "type": "P", "idx": 6, "did": 2, "present": true}
    }}

The entries' fields belong to the kind (the owners check them); this module checks the shape.
Version 1 files -- the Modbus slots as earlier releases wrote them, ``{"version": 1, "meter":
..., "slots": {name: {"slot": k, "type": code}}}`` -- are read as they are and written as
version 2 at their next change. Writes are atomic (:func:`gateway.support.statefile.write_text`).

:class:`PinLock`: a running gateway holds a shared lock on ``<state_dir>/locks/<meter>.lock``
for every meter it serves; ``egauge-gateway pins release`` takes it exclusively, so pins are
never released under a gateway that would write them back. The locks are ``flock`` locks:
they end with the process that holds them, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.errors import StateFileError
from gateway.support.statefile import write_text

VERSION: Final = 2
Scalar = str | int | float | bool | None
Entry = dict[str, Scalar]


@dataclass(slots=True)
class PinFile:
    """The pins of one kind for one meter: ``entries`` maps a register name to its fields,
    in the order they were pinned; ``meta`` holds facts about the meter itself."""

    meter: str
    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)
    meta: dict[str, Scalar] = field(default_factory=dict)

    def render(self) -> str:
        """The file's text: version 2, one register per line."""
        rows = [f"  {json.dumps(name, ensure_ascii=False)}: {json.dumps(entry, ensure_ascii=False)}"
                for name, entry in self.entries.items()]
        head = (f'{{"version": {VERSION}, "kind": {json.dumps(self.kind)}, '
                f'"meter": {json.dumps(self.meter)}, '
                f'"meta": {json.dumps(self.meta, ensure_ascii=False, sort_keys=True)}, '
                '"pins": {')
        return head + ("\n" + ",\n".join(rows) + "\n" if rows else "") + "}}\n"


class PinStore:
    """The pin files of one kind: ``<state_dir>/<kind>/<meter>.json``."""

    def __init__(self, state_dir: str | Path, kind: str) -> None:
        self.state_dir = Path(state_dir)
        self.kind = kind
        self.directory = self.state_dir / kind

    def path(self, meter: str) -> Path:
        return self.directory / f"{meter}.json"

    def meters(self) -> list[str]:
        """The meters that have a pin file of this kind, sorted."""
        try:
            return sorted(p.stem for p in self.directory.glob("*.json") if not
                          p.name.startswith("."))
        except OSError:
            return []

    def exists(self, meter: str) -> bool:
        return self.path(meter).is_file()

    def load(self, meter: str) -> PinFile:
        """The pins of ``meter`` (no file: none). A file that cannot be read or does not have
        the shape above raises :class:`StateFileError`."""
        path = self.path(meter)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return PinFile(meter, self.kind)
        except (OSError, UnicodeDecodeError) as exc:
            raise StateFileError(str(path), f"cannot read: {_reason(exc)}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateFileError(str(path), f"not a valid pin file (not JSON: {exc})") from exc
        return PinFile(meter, self.kind, *_parse(data, str(path)))

    def save(self, pins: PinFile) -> None:
        self.write(pins.meter, pins.render())

    def write(self, meter: str, text: str) -> None:
        """Write a rendered file atomically (takes the text, so that a thread can write what
        the event loop rendered). OSError when it cannot."""
        write_text(self.path(meter), text)


def _parse(data: object, where: str) -> tuple[dict[str, Entry], dict[str, Scalar]]:
    if not isinstance(data, dict):
        raise StateFileError(where, "not a valid pin file (not a JSON object)")
    version = data.get("version", 1)
    key = "slots" if version == 1 else "pins"
    if version not in (1, VERSION):
        raise StateFileError(where, f"not a valid pin file (unknown version {version!r})")
    entries = data.get(key)
    meta = data.get("meta", {})
    if not isinstance(entries, dict) or not isinstance(meta, dict):
        raise StateFileError(where, f"not a valid pin file ({key!r} must be an object)")
    out: dict[str, Entry] = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not all(_scalar(v) for v in entry.values()):
            raise StateFileError(where, f"not a valid pin file (entry {name!r} must be an "
                                        "object of plain values)")
        out[str(name)] = {str(k): v for k, v in entry.items()}
    return out, {str(k): v for k, v in meta.items() if _scalar(v)}


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def integer(entry: Mapping[str, Scalar], key: str) -> int | None:
    """``entry[key]`` when it is an integer (booleans are not), else ``None``."""
    value = entry.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class PinLock:
    """The lock that says "a running gateway serves this meter": ``<state_dir>/locks/<meter>.lock``.

    ``share()`` (the gateway) never waits: when another process holds the lock exclusively
    (a ``pins release`` at this moment) it returns False and the gateway goes on without it.
    ``take()`` (``pins release``) never waits either: False while any gateway shares it."""

    def __init__(self, state_dir: str | Path, meter: str) -> None:
        self.path = Path(state_dir) / "locks" / f"{meter}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def share(self) -> bool:
        return self._lock(fcntl.LOCK_SH)

    def take(self) -> bool:
        return self._lock(fcntl.LOCK_EX)

    def _lock(self, mode: int) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
