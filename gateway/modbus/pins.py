"""Auto-pinned slots per meter, persisted so an address never moves.

The first time a map with an ``auto`` block sees a register name, the name gets the next free
slot; the assignment is written to ``<state_dir>/modbus/<meter>.json`` (the pin file format of
:mod:`gateway.support.pins`, atomically) and read back on every start. Registers that
disappear from the meter keep their slot (their values read "not available"); a slot is never
given to another name while its pin exists. Files of earlier releases (format version 1) are
read as they are, so an upgrade moves no address.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.errors import MappingError, StateFileError
from gateway.support import PinFile, integer
from gateway.support import PinStore as Files

KIND: Final = "modbus"


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

    def release(self, name: str) -> Pin | None:
        """Forget ``name``'s slot (``pins release``): the slot is free for the next new name."""
        return self._pins.pop(name, None)

    def copy(self) -> Pins:
        return Pins(self.meter, self._pins)

    def to_file(self) -> PinFile:
        return PinFile(self.meter, KIND, {n: {"slot": p.slot, "type": p.type_code}
                                          for n, p in self.items()})

    def to_json(self) -> str:
        """The pin file (:mod:`gateway.support.pins`, version 2): ``{"version": 2, "kind":
        "modbus", "meter": ..., "pins": {name: {"slot": k, "type": code}}}``, one register
        per line, in slot order."""
        return self.to_file().render()


class PinStore:
    """Where :class:`Pins` live: one JSON file per meter under ``<state_dir>/modbus``."""

    def __init__(self, state_dir: str | Path) -> None:
        self._files = Files(state_dir, KIND)
        self.directory = self._files.directory

    def path(self, meter: str) -> Path:
        return self._files.path(meter)

    def meters(self) -> list[str]:
        return self._files.meters()

    def load(self, meter: str) -> Pins:
        """The saved pins of ``meter`` (none yet: empty). A damaged file raises
        :class:`MappingError`: serving without it could move addresses."""
        path = self.path(meter)
        try:
            entries = self._files.load(meter).entries
        except StateFileError as exc:
            raise MappingError([str(exc)], str(path)) from exc
        pins: dict[str, Pin] = {}
        for name, entry in entries.items():
            slot, code = integer(entry, "slot"), entry.get("type", "")
            if slot is None or slot < 0 or not isinstance(code, str):
                raise MappingError([f"{path}: not a valid pin file (entry {json.dumps(name)}: "
                                    "slot must be an integer >= 0, type a string)"], str(path))
            pins[name] = Pin(slot, code)
        if len({p.slot for p in pins.values()}) != len(pins):
            raise MappingError([f"{path}: not a valid pin file (slots repeat)"], str(path))
        return Pins(meter, pins)

    def save(self, pins: Pins) -> None:
        self.write(pins.meter, pins.to_json())

    def write(self, meter: str, text: str) -> None:
        """Write atomically: a reader sees the old file or the new one, never a mix.
        (Takes the serialised text so a thread can write what the event loop produced.)"""
        self._files.write(meter, text)
