"""The simulated register set: names, type codes, idx/did, value functions, formulas.

Each physical register's value is a :class:`~gateway.simulator.signals.Signal` (a
:class:`Wave`, a daylight curve or a mix of them); its stored value is the meter's
accumulator: the signal's count of quanta since the database was created (egauge-webapi
§2.4), except for discrete registers (``d``), which store the value itself. Virtual
registers are sums and differences of physical ones. The quanta are the spec's own table,
kept here on purpose: the simulator is the reference the gateway's unit handling is tested
against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from gateway.simulator.signals import Signal

QUANTA: dict[str, float] = {
    "#": 1.0, "#3": 0.001, "%": 0.001, "$": 2.0**-29, "a": 0.001, "aq": 0.001, "d": 1.0,
    "Ee": 1.0, "F": 0.001, "h": 0.001, "I": 0.001, "m": 0.001, "P": 1.0, "Pa": 1.0,
    "ppm": 0.001, "var": 1.0, "PQ": 1.0, "Q": 1.0, "Qe": 0.001, "Qv": 1e-9, "R": 1.0,
    "S": 1.0, "T": 0.001, "THD": 0.001, "V": 0.001, "v": 0.001, "Vdc": 0.001,
    "Idc": 0.001, "dT": 0.001,
}  # fmt: skip


def quantum(type_code: str) -> float:
    """The physical value of one raw count for ``type_code`` (1 for unknown codes)."""
    return QUANTA.get(type_code, 1.0)


@dataclass(frozen=True, slots=True)
class SimRegister:
    """One register of a simulated meter.

    Physical registers have a ``did`` and a ``wave`` (any signal) and optionally a
    ``source``, the sensor expression ``/config/register/physical/*/value`` shows (e.g.
    ``S1*L1+S2*L2``); virtual ones have a ``formula`` of ``(sign, name)`` terms, e.g.
    ``(("+", "Grid"), ("+", "Solar+"))``.
    """

    name: str
    type_code: str
    idx: int
    did: int | None = None
    wave: Signal | None = None
    formula: tuple[tuple[str, str], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not self.name or "," in self.name or not self.name.isprintable():
            raise ValueError(f"invalid register name {self.name!r}")
        if self.name.isdigit():
            raise ValueError(f"register name {self.name!r} must not be all digits")
        if self.idx < 0:
            raise ValueError(f"register {self.name!r}: idx must not be negative")
        if self.did is None:
            if not self.formula or self.wave is not None:
                raise ValueError(f"virtual register {self.name!r} needs a formula and no wave")
            if any(sign not in "+-" or len(sign) != 1 for sign, _ in self.formula):
                raise ValueError(f"virtual register {self.name!r}: signs must be + or -")
        elif self.wave is None or self.formula:
            raise ValueError(f"physical register {self.name!r} needs a wave and no formula")

    @property
    def virtual(self) -> bool:
        return self.did is None

    @property
    def quantum(self) -> float:
        return quantum(self.type_code)

    def formula_text(self) -> str:
        """The formula as the meter writes it: ``+"Grid"+"Solar+"`` (``\\"``, ``\\\\`` escaped)."""
        return "".join(
            sign + '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for sign, name in self.formula
        )


def physical(name: str, type_code: str, idx: int, did: int, wave: Signal,
             source: str = "") -> SimRegister:
    return SimRegister(name, type_code, idx, did, wave, source=source)


def virtual(name: str, type_code: str, idx: int, *terms: str) -> SimRegister:
    """A virtual register from terms such as ``"+Grid"``, ``"-Solar+"``."""
    return SimRegister(name, type_code, idx, formula=tuple((t[0], t[1:]) for t in terms))


def check_register_set(registers: Sequence[SimRegister]) -> None:
    """Reject duplicate names, idx or did values and formulas naming unknown registers."""
    for what, values in (
        ("name", [r.name for r in registers]),
        ("idx", [str(r.idx) for r in registers]),
        ("did", [str(r.did) for r in registers if r.did is not None]),
    ):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ValueError(f"duplicate register {what}: {', '.join(dupes)}")
    phys = {r.name for r in registers if not r.virtual}
    for reg in registers:
        missing = [n for _, n in reg.formula if n not in phys]
        if missing:
            raise ValueError(f"virtual register {reg.name!r} names unknown {missing}")


def reordered(registers: Sequence[SimRegister], names: Iterable[str]) -> list[SimRegister]:
    """The same registers with their idx values handed out again in the order ``names``
    (registers not named keep their relative order after those named)."""
    order = list(names)
    by_name = {r.name: r for r in registers}
    unknown = [n for n in order if n not in by_name]
    if unknown:
        raise ValueError(f"unknown registers {unknown}")
    rest = [r.name for r in registers if r.name not in order]
    pool = sorted(r.idx for r in registers)
    return [replace(by_name[n], idx=i) for n, i in zip(order + rest, pool, strict=True)]


def without(registers: Sequence[SimRegister], names: Iterable[str]) -> list[SimRegister]:
    """The registers minus those named (and minus virtual registers that use them)."""
    gone = set(names)
    unknown = gone - {r.name for r in registers}
    if unknown:
        raise ValueError(f"unknown registers {sorted(unknown)}")
    kept = [r for r in registers if r.name not in gone]
    return [r for r in kept if not any(n in gone for _, n in r.formula)]


def with_added(registers: Sequence[SimRegister], name: str, type_code: str,
               wave: Signal) -> list[SimRegister]:
    """The registers plus a new physical one at the next free idx and did."""
    idx = max((r.idx for r in registers), default=-1) + 1
    did = max((r.did for r in registers if r.did is not None), default=-1) + 1
    return [*registers, physical(name, type_code, idx, did, wave)]


def renamed(registers: Sequence[SimRegister], names: dict[str, str]) -> list[SimRegister]:
    """The same registers (idx, did, values) with some renamed: ``{old: new}``; formulas that
    use an old name follow it, as they do on a meter."""
    unknown = set(names) - {r.name for r in registers}
    if unknown:
        raise ValueError(f"unknown registers {sorted(unknown)}")
    return [replace(r, name=names.get(r.name, r.name),
                    formula=tuple((s, names.get(n, n)) for s, n in r.formula))
            for r in registers]


def retyped(registers: Sequence[SimRegister], codes: dict[str, str]) -> list[SimRegister]:
    """The same registers with some type codes changed: ``{name: type code}``."""
    unknown = set(codes) - {r.name for r in registers}
    if unknown:
        raise ValueError(f"unknown registers {sorted(unknown)}")
    return [replace(r, type_code=codes.get(r.name, r.type_code)) for r in registers]
