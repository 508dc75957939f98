"""Auto-pinned slots per meter, persisted so an address never moves.

The first time a map with an ``auto`` block sees a register name, the name gets the next free
slot; the assignment is written to ``<state_dir>/modbus/<meter>.json`` (atomically: a temporary
file, fsync, rename) and read back on every start. Registers that disappear from the meter
keep their slot (their values read "not available"); a slot is never given to another name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.errors import MappingError

_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Pin:
    """One name's slot and the type code last seen for it (for unit columns)."""

    slot: int
    type_code: str = ""


class Pins:
    """The slots of one meter: name -> :class:`Pin`, in slot order."""

    def __init__(self, meter: str, pins: Mapping[str, Pin] | None = None) -> None:
        self.meter = meter
        self._pins: dict[str, Pin] = dict(pins or {})

    def __contains__(self, name: object) -> bool:
        return name in self._pins

    def __len__(self) -> int:
        return len(self._pins)

    def items(self) -> list[tuple[str, Pin]]:
        return sorted(self._pins.items(), key=lambda item: item[1].slot)

    def get(self, name: str) -> Pin | None:
        return self._pins.get(name)

    def assign(self, names: Iterable[tuple[str, str]], usable: Iterable[int]) -> list[str]:
        """Give each new ``(name, type_code)`` the next usable slot not taken; update type
        codes of known names. Returns the names that got a new slot."""
        taken = {p.slot for p in self._pins.values()}
        free = (s for s in usable if s not in taken)
        added: list[str] = []
        for name, code in names:
            pin = self._pins.get(name)
            if pin is None:
                slot = next(free, None)
                if slot is None:
                    break
                self._pins[name] = Pin(slot, code)
                added.append(name)
            elif code and pin.type_code != code:
                self._pins[name] = Pin(pin.slot, code)
        return added

    def to_json(self) -> str:
        """``{"version": 1, "meter": ..., "slots": {name: {"slot": k, "type": code}}}``, one
        register per line."""
        rows = [f"  {json.dumps(n, ensure_ascii=False)}: "
                f"{json.dumps({'slot': p.slot, 'type': p.type_code})}" for n, p in self.items()]
        head = f'{{"version": {_VERSION}, "meter": {json.dumps(self.meter)}, "slots": {{'
        return head + ("\n" + ",\n".join(rows) + "\n" if rows else "") + "}}\n"


class PinStore:
    """Where :class:`Pins` live: one JSON file per meter under ``<state_dir>/modbus``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.directory = Path(state_dir) / "modbus"

    def path(self, meter: str) -> Path:
        return self.directory / f"{meter}.json"

    def load(self, meter: str) -> Pins:
        """The saved pins of ``meter`` (none yet: empty). A damaged file raises
        :class:`MappingError`: serving without it could move addresses."""
        path = self.path(meter)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Pins(meter)
        except OSError as exc:
            raise MappingError([f"{path}: cannot read: {exc.strerror or exc}"], str(path)) from exc
        try:
            data = json.loads(text)
            slots = data["slots"]
            pins = {str(name): Pin(int(entry["slot"]), str(entry.get("type", "")))
                    for name, entry in slots.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problem = f"{path}: not a valid pin file ({exc.__class__.__name__}: {exc})"
            raise MappingError([problem], str(path)) from exc
        if len({p.slot for p in pins.values()}) != len(pins) or any(p.slot < 0 for p in
                                                                      pins.values()):
            raise MappingError([f"{path}: not a valid pin file (slots repeat or are negative)"],
                               str(path))
        return Pins(meter, pins)

    def save(self, pins: Pins) -> None:
        self.write(pins.meter, pins.to_json())

    def write(self, meter: str, text: str) -> None:
        """Write atomically: a reader sees the old file or the new one, never a mix.
        (Takes the serialised text so a thread can write what the event loop produced.)"""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(meter)
        fd, tmp = tempfile.mkstemp(prefix=f".{meter}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
