"""The hub: the latest state of every meter, fanned out to the outputs.

Producers (the pollers) call the ``publish_*`` methods; the hub stores the newest identity,
register set, reading and availability per meter and hands each update synchronously to every
sink. Sinks must not block (they enqueue and return); a sink that raises is logged as
``sink_failed`` and the others still receive the update. Producers never know the sinks.

A *stage* (:meth:`Hub.add_stage`) sees each reading before it is stored and fanned out and
may hand on a richer one (the energy counters add their values to the registers there); a
stage that raises is logged as ``stage_failed`` and the reading goes on as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from gateway.model import Availability, Identity, Reading, RegisterInfo

log = structlog.get_logger(__name__)


Stage = Callable[[Reading], Reading]


class Sink(Protocol):
    """An output that receives every update; each method must return quickly."""

    def on_identity(self, meter: str, identity: Identity) -> None: ...

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None: ...

    def on_reading(self, reading: Reading) -> None: ...

    def on_availability(self, availability: Availability) -> None: ...


@dataclass(frozen=True, slots=True)
class MeterState:
    """What the hub knows about one meter; ``None`` until the first update of that kind."""

    meter: str
    identity: Identity | None = None
    registers: tuple[RegisterInfo, ...] = ()
    reading: Reading | None = None
    availability: Availability | None = None


class Hub:
    """Latest state per meter plus synchronous fan-out to the registered sinks."""

    def __init__(self, meters: Iterable[str] = ()) -> None:
        self._sinks: list[Sink] = []
        self._stages: list[Stage] = []
        self._state: dict[str, MeterState] = {m: MeterState(m) for m in meters}

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def remove_sink(self, sink: Sink) -> None:
        self._sinks.remove(sink)

    def add_stage(self, stage: Stage) -> None:
        """Run ``stage`` on every reading before the sinks see it (stages run in order)."""
        self._stages.append(stage)

    @property
    def meters(self) -> tuple[str, ...]:
        return tuple(self._state)

    def set_meters(self, meters: Iterable[str]) -> None:
        """Track these meters from now on (a configuration reload): the state of those that
        stay is kept, removed ones are forgotten, new ones start empty."""
        self._state = {m: self._state.get(m) or MeterState(m) for m in meters}

    def meter(self, meter: str) -> MeterState:
        """The latest state of one meter (an empty state for a meter never heard of)."""
        return self._state.get(meter) or MeterState(meter)

    def snapshot(self) -> Mapping[str, MeterState]:
        """A copy of every meter's latest state, for re-announcing and status pages."""
        return dict(self._state)

    def publish_identity(self, meter: str, identity: Identity) -> None:
        self._update(meter, identity=identity)
        self._fan_out("identity", meter, lambda s: s.on_identity(meter, identity))

    def publish_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        self._update(meter, registers=registers)
        self._fan_out("registers", meter, lambda s: s.on_registers(meter, registers))

    def publish_availability(self, availability: Availability) -> None:
        self._update(availability.meter, availability=availability)
        self._fan_out(
            "availability", availability.meter, lambda s: s.on_availability(availability)
        )

    def _update(self, meter: str, **changes: Any) -> None:
        self._state[meter] = replace(self.meter(meter), **changes)

    def publish_reading(self, reading: Reading) -> None:  # the hot path: once per poll
        for stage in self._stages:
            try:
                reading = stage(reading)
            except Exception as exc:  # the reading goes on without what the stage adds
                log.error("stage_failed", stage=getattr(stage, "__qualname__", repr(stage)),
                          meter=reading.meter, error=repr(exc), exc_info=exc)
        meter = reading.meter
        old = self._state.get(meter) or MeterState(meter)
        self._state[meter] = MeterState(meter, old.identity, old.registers, reading,
                                        old.availability)
        for sink in tuple(self._sinks):
            try:
                sink.on_reading(reading)
            except Exception as exc:  # one broken output must not starve the others
                log.error("sink_failed", sink=type(sink).__name__, update="reading",
                          meter=meter, error=repr(exc), exc_info=exc)

    def _fan_out(self, kind: str, meter: str, call: Callable[[Sink], None]) -> None:
        for sink in tuple(self._sinks):
            try:
                call(sink)
            except Exception as exc:  # one broken output must not starve the others
                log.error(
                    "sink_failed",
                    sink=type(sink).__name__,
                    update=kind,
                    meter=meter,
                    error=repr(exc),
                    exc_info=exc,
                )
