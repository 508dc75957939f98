"""ModbusOutput: a hub sink that keeps one register image per meter and serves them.

Each meter is one unit id with the register map it names (``meters[].modbus_mapping``, which
the configuration defaults to ``modbus.mapping``). With an ``auto`` block, every register
with energy counters also gets a slot for each counter, pinned as ``"<register> import"`` and
``"<register> export"`` after the registers (see :func:`gateway.modbus.layout.auto_points`).
The sink methods only update memory; new auto-pinned slots are written to ``state_dir`` by
:meth:`ModbusOutput.serve` (a task of the app). With
``modbus.writes`` and a command router, the maps' coils and command registers are writable
(see :mod:`gateway.modbus.writes`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from gateway.commands import Outcome as CommandOutcome
from gateway.config import EnergyConfig, MeterConfig, ModbusConfig
from gateway.errors import ConfigError
from gateway.modbus.image import Codecs, UnitImage
from gateway.modbus.layout import (
    Layout,
    SlotPoints,
    export_csv,
    pin_new,
    polled_names,
    with_counters,
)
from gateway.modbus.loader import load_mapping
from gateway.modbus.mapping import RegisterMap, counter_of
from gateway.modbus.pins import Pins, PinStore
from gateway.modbus.server import ModbusServer, ServerStats
from gateway.modbus.writes import ModbusWrites, Router, UnitWrites
from gateway.model import Availability, Identity, Reading, RegisterInfo

log = structlog.get_logger(__name__)


class _Unit:
    """One meter's map, pins and current image."""

    __slots__ = ("conflicts", "energy", "image", "meter", "names", "pins", "rmap", "selected",
                 "spec", "type_codes", "unplaced", "writes")

    def __init__(self, meter: str, rmap: RegisterMap, pins: Pins, image: UnitImage,
                 selected: tuple[str, ...] | None, spec: str = "",
                 energy: EnergyConfig | None = None) -> None:
        self.meter = meter
        self.energy = energy or EnergyConfig()
        self.conflicts: set[str] = set()  # names whose slot pin is of the other kind
        self.spec = spec  # the mapping's name or path
        self.selected = None if selected is None else frozenset(selected)  # None: all polled
        self.rmap = rmap
        self.pins = pins
        self.image = image
        self.type_codes: dict[str, str] = {p: pin.type_code for p, pin in pins.items()}
        self.unplaced: set[str] = set()  # no free slot left for these
        self.names: tuple[str, ...] = ()  # the register names of the last reading
        self.writes = UnitWrites(meter, rmap, self.is_online)

    def is_online(self) -> bool:
        return self.image.online


class ModbusOutput:
    """The Modbus TCP output: ``await start()``, feed it as a hub sink, ``await close()``.

    Writes are served when ``config.writes`` is set and a ``router`` is given (whose
    outcomes then keep the coils' relay states)."""

    def __init__(self, config: ModbusConfig, meters: Sequence[MeterConfig],
                 state_dir: str | Path, *, clock: Callable[[], float] = time.time,
                 router: Router | None = None) -> None:
        if config.unknown_unit not in ("ignore", "exception"):
            raise ConfigError([f"modbus.unknown_unit: must be ignore or exception "
                               f"(got {config.unknown_unit!r})"])
        self.config = config
        self._clock = clock
        self._store = PinStore(state_dir)
        self._codecs = Codecs()  # shared by every unit's image
        self._slot_points = SlotPoints()  # and the auto slots' points, by every layout
        self._units, self._by_meter = self._plan_units(meters, {})
        writes = None
        if config.writes and router is not None:
            writes = ModbusWrites(router, self._writes)
            router.on_outcome(self.on_outcome)
        self._server = ModbusServer(config.host, config.port, self.image,
                                    answer_unknown=config.unknown_unit == "exception",
                                    writes=writes,
                                    per_address=config.max_connections_per_address,
                                    frame_timeout_s=config.frame_timeout_s,
                                    allow_from=config.allow_from)
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``modbus.port: 0``)."""
        return self._server.port

    @property
    def stats(self) -> ServerStats:
        return self._server.stats

    @property
    def listening(self) -> bool:
        return self._server.listening

    async def start(self) -> None:
        await self._server.start()
        if self._server.writes is not None:
            log.info("modbus_writes_enabled", units=sorted(self._units))
        elif self.config.writes:
            log.warning("modbus_writes_without_router")  # served read-only

    async def serve(self) -> None:
        """Write newly pinned slots to ``state_dir`` as they appear (a task of the app)."""
        while True:
            if not self._dirty:
                await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                meter = self._dirty.pop()
                unit = self._by_meter.get(meter)
                if unit is None:  # removed by a reload (its pins were written then)
                    continue
                text = unit.pins.to_json()
                try:
                    await asyncio.to_thread(self._store.write, meter, text)
                except OSError as exc:
                    self._failed(meter, exc)
                    break  # retried with the next change, or at close

    async def close(self) -> None:
        """Stop serving; pins still pending are written before this returns."""
        await self._server.close()
        self.flush()

    def prepare_meters(self, meters: Sequence[MeterConfig]) -> Callable[[], None]:
        """Check a new meter set and return the step that switches to it (a configuration
        reload). A mapping that cannot be loaded or a duplicate unit id raises
        :class:`ConfigError` here, before anything changed. A meter whose unit id, mapping and
        register selection stay the same keeps its unit and image; removed meters' units go
        (their pending pins are written); new or changed meters get fresh units."""
        units, by_meter = self._plan_units(meters, self._by_meter)

        def switch() -> None:
            gone = [m for m, unit in self._by_meter.items() if by_meter.get(m) is not unit]
            for meter in gone:
                if meter in self._dirty:
                    self._dirty.discard(meter)
                    try:
                        self._store.save(self._by_meter[meter].pins)
                    except OSError as exc:
                        log.error("modbus_pins_not_saved", meter=meter,
                                  path=str(self._store.path(meter)),
                                  error=exc.strerror or str(exc))
            self._units, self._by_meter = units, by_meter

        return switch

    def _plan_units(self, meters: Sequence[MeterConfig], current: dict[str, _Unit]
                    ) -> tuple[dict[int, _Unit], dict[str, _Unit]]:
        """The units of ``meters``, reusing those of ``current`` that still fit."""
        maps: dict[str, RegisterMap] = {}
        units: dict[int, _Unit] = {}
        by_meter: dict[str, _Unit] = {}
        for m in meters:
            if m.modbus_unit_id in units:
                raise ConfigError([f"meters: unit id {m.modbus_unit_id} of {m.id!r} is also "
                                   f"{units[m.modbus_unit_id].meter!r}'s"])
            spec = m.modbus_mapping or self.config.mapping
            selected = None if m.registers is None else frozenset(m.registers)
            unit = current.get(m.id)
            if unit is None or (unit.image.unit_id, unit.spec, unit.selected, unit.energy) != (
                    m.modbus_unit_id, spec, selected, m.energy):
                rmap = maps.get(spec) or maps.setdefault(spec, load_mapping(spec))
                pins = unit.pins if unit is not None and unit.spec == spec \
                    else self._store.load(m.id)
                image = UnitImage(m.modbus_unit_id, self._layout(m.id, rmap, pins), self._clock,
                                  self._codecs)
                unit = _Unit(m.id, rmap, pins, image, m.registers, spec, m.energy)
            units[m.modbus_unit_id] = by_meter[m.id] = unit
        return units, by_meter

    # -- lookups ------------------------------------------------------------------------------

    def image(self, unit_id: int) -> UnitImage | None:
        unit = self._units.get(unit_id)
        return unit.image if unit is not None else None

    def _writes(self, unit_id: int) -> UnitWrites | None:
        unit = self._units.get(unit_id)
        return unit.writes if unit is not None else None

    def layout(self, meter: str) -> Layout:
        return self._by_meter[meter].image.layout

    def export(self, meter: str) -> str:
        """The live map of ``meter``'s unit as CSV."""
        unit = self._by_meter[meter]
        return export_csv(unit.image.layout, unit.type_codes)

    # -- the sink -----------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        unit = self._by_meter.get(meter)
        if unit is not None:
            unit.image.apply_identity(identity)

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        unit = self._by_meter.get(meter)
        if unit is None:
            return
        ordered = polled_names(registers, unit.selected)
        unit.type_codes.update(ordered)
        self._pin(unit, self._with_counters(unit, ordered))

    def on_reading(self, reading: Reading) -> None:
        unit = self._by_meter.get(reading.meter)
        if unit is None:
            return
        if unit.rmap.auto is not None:
            names = tuple(r.name for r in reading.registers)
            if names != unit.names:  # only look for new names when the set changed
                unit.names = names
                every = self._with_counters(unit, [(r.name, r.type_code)
                                                   for r in reading.registers])
                new = [(n, c) for n, c in every if n not in unit.pins and n not in unit.unplaced]
                if new:
                    self._pin(unit, new)
        unit.image.apply_reading(reading)

    def on_availability(self, availability: Availability) -> None:
        unit = self._by_meter.get(availability.meter)
        if unit is not None:
            unit.image.apply_availability(availability)

    def on_outcome(self, outcome: CommandOutcome) -> None:
        """A request the command router finished: a relay switched changes its coils."""
        unit = self._by_meter.get(outcome.command.meter)
        if unit is not None:
            unit.writes.note(outcome)

    # -- pinning ------------------------------------------------------------------------------

    def _layout(self, meter: str, rmap: RegisterMap, pins: Pins) -> Layout:
        layout = Layout.build(rmap, pins, self._slot_points)
        for name in layout.dropped:
            pin = pins.get(name)
            log.warning("modbus_pin_conflict", meter=meter, register=name,
                        slot=pin.slot if pin else None)
        return layout

    def _with_counters(self, unit: _Unit, names: list[tuple[str, str]]
                       ) -> list[tuple[str, str]]:
        """``names`` and their counters' slot names (:func:`with_counters`); a clash is
        logged once."""
        out, clashes = with_counters(names, unit.pins, unit.energy)
        for name in clashes:
            if name not in unit.conflicts:
                unit.conflicts.add(name)
                pin = unit.pins.get(name)
                kind = "counter" if pin is not None and counter_of(name, pin.type_code) \
                    else "register"
                log.warning("modbus_name_conflict", meter=unit.meter, name=name,
                            pinned_as=kind)
        return out

    def _pin(self, unit: _Unit, names: list[tuple[str, str]]) -> None:
        if unit.rmap.auto is None:
            return
        explicit = unit.rmap.pinned_names()
        candidates = [(n, c) for n, c in names if n not in explicit and n not in unit.unplaced]
        before = {n: p.type_code for n, p in unit.pins.items()}
        added = pin_new(unit.rmap, unit.pins, candidates)
        retyped = any(n in before and c and before[n] != c for n, c in candidates)
        unplaced = {n for n, _ in candidates if n not in unit.pins}
        if unplaced:
            unit.unplaced |= unplaced
            log.error("modbus_slots_exhausted", meter=unit.meter, registers=sorted(unplaced))
        if not added and not retyped:
            return
        if added:
            old = unit.image
            unit.image = UnitImage(old.unit_id, self._layout(unit.meter, unit.rmap, unit.pins),
                                   self._clock, self._codecs)
            unit.image.replay(old)
            log.info("modbus_registers_pinned", meter=unit.meter, registers=added)
        self._dirty.add(unit.meter)
        self._wake.set()

    def flush(self) -> None:
        """Write the pins still pending, synchronously (at close, on a crash)."""
        for meter in sorted(self._dirty & set(self._by_meter)):
            self._dirty.discard(meter)
            try:
                self._store.save(self._by_meter[meter].pins)
            except OSError as exc:
                self._failed(meter, exc)

    def _failed(self, meter: str, exc: OSError) -> None:
        self._dirty.add(meter)
        log.error("modbus_pins_not_saved", meter=meter, path=str(self._store.path(meter)),
                  error=exc.strerror or str(exc))
