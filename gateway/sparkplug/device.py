"""One meter as a Sparkplug Device: what the hub told about it, what its DBIRTH declared,
and the metrics of its DBIRTH, DDATA (by exception) and historical DDATA.

A device is born once its identity is known, a reading has arrived and it is online. The
DBIRTH declares every register metric of that reading and the device metrics, with aliases
and current values; a reading whose register set (names and type codes) differs from the
born one needs a new DBIRTH. DDATA carries only the metrics whose value changed since the
last message, by alias, with the meter's timestamp of the reading. Metric timestamps are the
meter's own clock (``Reading.ts``, whole ms).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.config import MeterConfig
from gateway.energy import counted
from gateway.history import HistoryRow
from gateway.model import Identity, Reading, RegisterValue
from gateway.sparkplug import metrics as m
from gateway.sparkplug.aliases import AliasBook
from gateway.sparkplug.payload import Metric, Value

PENDING_ROWS: Final = 3600  # history rows kept per meter while its device is not born
SlugOf = Callable[[str, str], str]
_UNSENT: Final = object()


def ms(ts: float) -> int:
    """Unix seconds as whole milliseconds."""
    return math.floor(ts * 1000.0)


def signature(values: Iterable[RegisterValue]) -> tuple[tuple[str, str], ...]:
    return tuple((v.name, v.type_code) for v in values)


@dataclass(slots=True)
class Device:
    """The state of one meter's device."""

    meter: MeterConfig
    identity: Identity | None = None
    reading: Reading | None = None
    online: bool = False
    born: bool = False  # a DBIRTH went out in the current birth of the node
    relays: dict[int, bool] = field(default_factory=dict)  # as last switched through us
    pending: deque[HistoryRow] = field(default_factory=lambda: deque(maxlen=PENDING_ROWS))
    dropped_rows: int = 0
    signature: tuple[tuple[str, str], ...] = ()  # the registers of the birth
    _registers: dict[str, tuple[m.RegisterMetric, ...]] = field(default_factory=dict)
    _defs: dict[str, m.MetricDef] = field(default_factory=dict)
    _aliases: dict[str, int] = field(default_factory=dict)
    _last: dict[str, Value] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.meter.id

    def ready(self) -> bool:
        """Whether a DBIRTH can be made: identity, a reading and online."""
        return self.online and self.identity is not None and self.reading is not None

    def declares(self, name: str) -> bool:
        """Whether the current birth declared the metric ``name``."""
        return name in self._defs

    def birth_metrics(self, book: AliasBook, slug_of: SlugOf) -> tuple[Metric, ...]:
        """Every metric with name, alias, type, properties and value, for a DBIRTH (new
        aliases and slugs are pinned in ``book``, which the caller saves)."""
        reading, identity = self.reading, self.identity
        assert reading is not None
        assert identity is not None
        meter = self.id
        self.signature = signature(reading.registers)
        energy = self.meter.energy
        self._registers = {
            v.name: m.register_metrics(book.slug(meter, v.name, slug_of(meter, v.name)),
                                       v.name, v.type_code,
                                       counted(energy, v.name, v.type_code))
            for v in reading.registers
        }
        defs = [rm.definition for rms in self._registers.values() for rm in rms]
        defs.extend(m.device_metrics(m.Writable.of(self.meter.commands)))
        values = self._values(reading.registers)
        values.update(m.device_values(identity, reading, True, self.relays))
        ts = ms(reading.ts)
        self._defs = {d.name: d for d in defs}
        self._aliases = {d.name: book.alias(meter, d.name) for d in defs}
        self._last = {d.name: values.get(d.name) for d in defs}
        return tuple(Metric(d.name, self._aliases[d.name], d.datatype, self._last[d.name], ts,
                            properties=d.properties) for d in defs)

    def _values(self, registers: Iterable[RegisterValue]) -> dict[str, Value]:
        """Register values by metric name (registers the birth did not declare left out)."""
        declared = self._registers
        return {rm.definition.name: rm.value_of(v)
                for v in registers for rm in declared.get(v.name, ())}

    def data_metrics(self, reading: Reading) -> tuple[Metric, ...]:
        """The metrics of ``reading`` (and the device's state) that changed since they were
        last sent, for a DDATA."""
        assert self.identity is not None
        values = self._values(reading.registers)
        values.update(m.device_values(self.identity, reading, True, self.relays))
        return self.changed(values, ms(reading.ts))

    def changed(self, values: Mapping[str, Value], ts: int) -> tuple[Metric, ...]:
        """Those of ``values`` (by metric name) that differ from what was last sent, as
        metrics with alias, type and ``ts``; they count as sent from now on."""
        out = []
        last, defs = self._last, self._defs
        for name, value in values.items():
            d = defs.get(name)
            if d is None or last.get(name, _UNSENT) == value:
                continue
            last[name] = value
            out.append(Metric(alias=self._aliases[name], datatype=d.datatype, value=value,
                              timestamp=ts))
        return tuple(out)

    def history_metrics(self, row: HistoryRow) -> tuple[Metric, ...]:
        """One stored row as historical metrics (registers the birth did not declare and
        values the row lacks are left out)."""
        ts = row.ts * 1000
        return tuple(
            Metric(alias=self._aliases[name], datatype=self._defs[name].datatype, value=value,
                   timestamp=ts, historical=True)
            for name, value in self._values(row.values).items() if value is not None
        )

    def keep_rows(self, rows: Iterable[HistoryRow]) -> None:
        """Hold rows until the device is born (the oldest go first when full)."""
        for row in rows:
            if len(self.pending) == self.pending.maxlen:
                self.dropped_rows += 1
            self.pending.append(row)
