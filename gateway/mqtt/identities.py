"""RegisterIdentities: the pinned slugs of every meter of this instance and the register drift
they reveal.

The slugs live in ``<gateway.state_dir>/slugs/<meter>.json`` (one pin file per meter, the
format of :mod:`gateway.support.pins`; the rules are those of :mod:`gateway.mqtt.slugs`), in
the shared state directory, so a meter keeps them when it moves to another shard instance.
The app runs this as a hub sink ahead of the outputs, also while MQTT is off, so that a name
is pinned the first time any output sees it and a drift is never missed:

- a register renamed or retyped on the meter is logged once as ``register_changed`` (with the
  meter, the old and new name and type code), counted per meter (``/metrics``) and kept for
  the status page (the latest :data:`RECENT`);
- changed pins are written by :meth:`RegisterIdentities.serve` (a task of the app) in a
  thread, atomically; :meth:`flush` writes what is pending at once (at stop, on a crash);
- from :meth:`start` to :meth:`close` each meter's :class:`~gateway.support.PinLock` is
  shared, so that ``egauge-gateway pins release`` refuses to work under the running gateway.

A pin file that cannot be read or checked raises :class:`~gateway.errors.StateFileError`
when the meter is loaded: the gateway does not start (exit 3) rather than move a topic.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import structlog

from gateway.model import Availability, Identity, Reading, RegisterChange, RegisterInfo
from gateway.mqtt.slugs import KIND, MeterSlugs
from gateway.support import PinLock, PinStore

log = structlog.get_logger(__name__)

RECENT: Final = 10  # register changes kept per meter for the status page


class RegisterIdentities:
    """Per meter: the pinned slugs, the drift seen, the lock; a hub sink and a service."""

    def __init__(self, state_dir: str | Path, meters: Iterable[str], *,
                 wall: Callable[[], float] = time.time) -> None:
        self.state_dir = Path(state_dir)
        self._files = PinStore(self.state_dir, KIND)
        self._wall = wall
        self._meters: dict[str, MeterSlugs] = {m: self._load(m) for m in meters}
        self._locks: dict[str, PinLock] = {}
        self._counts: dict[str, int] = {}
        self._recent: dict[str, deque[RegisterChange]] = {}
        self._dirty: set[str] = set()
        self._unlogged: dict[str, dict[str, str]] = {}  # pinned since the meter's last write
        self._wake = asyncio.Event()
        self._running = False

    def path(self, meter: str) -> Path:
        return self._files.path(meter)

    def _load(self, meter: str) -> MeterSlugs:
        return MeterSlugs.from_file(self._files.load(meter), str(self._files.path(meter)))

    def meter(self, meter: str) -> MeterSlugs:
        """The pins of ``meter`` (read from its file the first time)."""
        pins = self._meters.get(meter)
        if pins is None:
            pins = self._meters[meter] = self._load(meter)
        return pins

    def slugs(self, meter: str, registers: Sequence[RegisterInfo]) -> dict[str, str]:
        """The slug of every name of ``registers``; new names are pinned, drift reported."""
        done = self.meter(meter).assign(registers, self._wall())
        if done.added:
            self._unlogged.setdefault(meter, {}).update(
                {name: done.slugs[name] for name in done.added})
        for change in done.changes:
            self._report(change)
        if done.changed:
            self._mark(meter)
        return done.slugs

    def entity_slug(self, meter: str, key: str, wanted: str) -> str:
        """The pinned slug of the entity ``key`` of ``meter`` (:meth:`MeterSlugs.entity`)."""
        value, added = self.meter(meter).entity(key, wanted)
        if added:
            self._unlogged.setdefault(meter, {})[key] = value
            self._mark(meter)
        return value

    # -- drift --------------------------------------------------------------------------------

    def _report(self, change: RegisterChange) -> None:
        meter = change.meter
        log.warning("register_changed", meter=meter, old_name=change.old_name,
                    new_name=change.new_name, old_type=change.old_type,
                    new_type=change.new_type, renamed=change.renamed, retyped=change.retyped)
        self._counts[meter] = self._counts.get(meter, 0) + 1
        self._recent.setdefault(meter, deque(maxlen=RECENT)).append(change)

    @property
    def change_counts(self) -> Mapping[str, int]:
        """Register changes seen per meter since the start."""
        return dict(self._counts)

    def recent_changes(self, meter: str) -> tuple[RegisterChange, ...]:
        """The latest register changes of ``meter``, oldest first."""
        return tuple(self._recent.get(meter, ()))

    # -- the sink -----------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        if self.meter(meter).note_identity(identity):
            self._mark(meter)

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        self.slugs(meter, registers)

    def on_reading(self, reading: Reading) -> None:
        """Nothing: names only a reading has are pinned when an output asks for them."""

    def on_availability(self, availability: Availability) -> None:
        """Nothing to pin."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        for meter in self._meters:
            self._lock(meter)

    def _lock(self, meter: str) -> None:
        lock = self._locks.setdefault(meter, PinLock(self.state_dir, meter))
        try:
            if not lock.share():
                log.warning("pins_lock_busy", meter=meter, path=str(lock.path))
        except OSError as exc:
            log.warning("pins_lock_failed", meter=meter, path=str(lock.path),
                        error=exc.strerror or str(exc))

    def _unlock(self, meter: str) -> None:
        lock = self._locks.pop(meter, None)
        if lock is not None:
            lock.release()

    def prepare_meters(self, meters: Sequence[str]) -> Callable[[], None]:
        """Load the pins of a reloaded meter set (a damaged file refuses the reload) and
        return the switch: removed meters' pending pins are written, their locks let go."""
        loaded = {m: self._meters.get(m) or self._load(m) for m in meters}

        def switch() -> None:
            for meter in [m for m in self._meters if m not in loaded]:
                self._write_now(meter)
                self._unlock(meter)
            self._meters = loaded
            if self._running:
                for meter in loaded:
                    self._lock(meter)

        return switch

    async def serve(self) -> None:
        """Write changed pins as they appear (a task of the app)."""
        while True:
            if not self._dirty:
                await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                meter = self._dirty.pop()
                pins = self._meters.get(meter)
                if pins is None:
                    continue
                self._log_pinned(meter)
                text = pins.to_file().render()
                try:
                    await asyncio.to_thread(self._files.write, meter, text)
                except OSError as exc:
                    self._failed(meter, exc)
                    break  # retried with the next change, or at close

    def flush(self) -> None:
        """Write the pins still pending, synchronously (at close, on a crash)."""
        for meter in sorted(self._dirty):
            self._write_now(meter)

    async def close(self) -> None:
        self.flush()
        self._running = False
        for meter in list(self._locks):
            self._unlock(meter)

    def _mark(self, meter: str) -> None:
        self._dirty.add(meter)
        self._wake.set()

    def _write_now(self, meter: str) -> None:
        pins = self._meters.get(meter)
        if pins is None or meter not in self._dirty:
            return
        self._dirty.discard(meter)
        self._log_pinned(meter)
        try:
            self._files.save(pins.to_file())
        except OSError as exc:
            self._failed(meter, exc)

    def _log_pinned(self, meter: str) -> None:
        """One ``slugs_pinned`` event for what a meter's next write holds that is new (a
        meter's registers, counters and diagnostics are pinned one by one as its discovery
        is built: one line, not one per entity)."""
        pinned = self._unlogged.pop(meter, None)
        if pinned:
            log.info("slugs_pinned", meter=meter, slugs=pinned)

    def _failed(self, meter: str, exc: OSError) -> None:
        self._dirty.add(meter)
        log.error("slugs_not_saved", meter=meter, path=str(self._files.path(meter)),
                  error=exc.strerror or str(exc))
