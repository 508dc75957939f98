"""Checking a register map file: every problem of a file at once, one line each
(``registers[3].type: unknown type 'flaot32' (did you mean 'float32'?)``), raised as
:class:`~gateway.errors.MappingError`. The writable points are checked by
:mod:`gateway.modbus.writemap`. The format is described in docs/MODBUS.md."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import replace
from pathlib import Path
from typing import Final

from gateway.config import MISSING, Context, Section, join, show
from gateway.errors import ConfigError, MappingError
from gateway.modbus.codec import STRING_WORD_ORDERS, TYPES, WORD_ORDERS
from gateway.modbus.mapping import (
    BUILTIN,
    METER_SOURCES,
    SOURCES,
    Auto,
    Point,
    RegisterMap,
    SlotField,
)
from gateway.modbus.writemap import check_command_address, command_point, writable

_TOP_KEYS: Final = ("description", "extends", "inputs", "registers", "auto", "coils", "command")
_POINT_KEYS: Final = ("address", "name", "register", "input", "source", "type", "scale",
                      "word_order", "unit", "description", "length", "value")
_AUTO_KEYS: Final = ("start", "slot")
_SLOT_KEYS: Final = ("source", "type", "scale", "word_order")
_MAX_ADDRESS: Final = 65535

Loader = Callable[[str], "RegisterMap"]


def parse_mapping(data: object, source: str, load_base: Loader | None = None) -> RegisterMap:
    """Check a parsed map; raise :class:`MappingError` with every problem at once.

    ``load_base`` (a ``str -> RegisterMap`` callable) resolves ``extends:``.
    """
    ctx = Context({}, Path.cwd())
    root = Section.of(ctx, "", data, _TOP_KEYS, what="a mapping with a registers list")
    if root is None:
        raise MappingError(ctx.problems, source)
    base = _base(root, load_base)
    inputs = _inputs(root, base)
    own = _points(root, inputs)
    auto = _auto(root.section("auto", _AUTO_KEYS)) if root.has("auto") else None
    description = root.optional_string("description") or ""
    labelled: list[tuple[str, Point]] = []
    if base is not None:
        labelled = [(f"{base.source} point {p.name!r}", p) for p in _reinput(base, inputs)]
    labelled += [(join("registers", i), p) for i, p in own if p is not None]
    coils, command = writable(root, base)
    label = "command" if root.has("command") or base is None else f"{base.source} command"
    _overlaps(ctx, labelled + ([(label, command_point(command))] if command else []))
    if auto is None and base is not None:
        auto = base.auto
    check_command_address(ctx, command, auto.start if auto else None, label)
    if ctx.problems:
        raise MappingError(ctx.problems, source)
    return RegisterMap(source, tuple(sorted((p for _, p in labelled), key=lambda p: p.address)),
                       auto, description or (base.description if base else ""), inputs,
                       coils, command)


def _base(root: Section, load_base: Loader | None) -> RegisterMap | None:
    name = root.optional_string("extends")
    if name is None:
        return None
    if name not in BUILTIN or load_base is None:
        return root.fail("extends", f"must be one of {', '.join(BUILTIN)}", name, None)
    try:
        base = load_base(name)
    except ConfigError as exc:
        return root.fail("extends", f"cannot load ({'; '.join(exc.problems)})", name, None)
    return base


def _inputs(root: Section, base: RegisterMap | None) -> dict[str, str | None]:
    inputs: dict[str, str | None] = dict(base.inputs) if base else {}
    raw = root.raw("inputs")
    if raw is MISSING or raw is None:
        return inputs
    if not isinstance(raw, MappingABC):
        return root.fail("inputs", "must be a mapping of input name to register name", raw, inputs)
    for key, value in raw.items():
        path = join("inputs", str(key))
        if base is not None and key not in base.inputs:
            hint = difflib.get_close_matches(str(key), sorted(base.inputs), n=1)
            tail = f" (did you mean {hint[0]!r}?)" if hint else ""
            root.ctx.problem(path, f"unknown input of {base.source}{tail}")
        elif value is not None and (not isinstance(value, str) or not value):
            root.ctx.problem(path, "must be a register name or null", value)
        else:
            inputs[str(key)] = value
    return inputs


def _reinput(base: RegisterMap, inputs: MappingABC[str, str | None]) -> list[Point]:
    """The base map's points with this file's input overrides applied."""
    return [p if p.input is None else replace(p, register=inputs.get(p.input))
            for p in base.points]


def _points(root: Section, inputs: MappingABC[str, str | None]) -> list[tuple[int, Point | None]]:
    raw = root.raw("registers", required=not root.has("extends"))
    if raw is MISSING or raw is None:
        return []
    if not isinstance(raw, list):
        return root.fail("registers", "must be a list of register entries", raw, [])
    return [(i, _point(root.ctx, join("registers", i), item, inputs)) for i, item in enumerate(raw)]


def _point(ctx: Context, path: str, data: object,
           inputs: MappingABC[str, str | None]) -> Point | None:
    s = Section.of(ctx, path, data, _POINT_KEYS, what="a mapping (address, name, source, type)")
    if s is None:
        return None
    before = len(ctx.problems)
    address = s.integer("address", -1, 0, _MAX_ADDRESS) if s.has("address") else _need(s, "address")
    source = _choice(s, "source", SOURCES)
    type_ = _choice(s, "type", tuple(TYPES))
    name = s.optional_string("name") or ""
    register = s.optional_string("register")
    input_ = s.optional_string("input")
    if source in METER_SOURCES:
        register = _register(s, name, register, input_, inputs)
    elif register is not None or input_ is not None:
        ctx.problem(s.at("register" if register is not None else "input"),
                    f"only for sources {', '.join(METER_SOURCES)}")
    if not name:
        name = register or input_ or source or ""
    scale = _scale(s, "scale")
    order = _word_order(s, "word_order", type_)
    length = _length(s, type_)
    value = _value(s, source, type_, length)
    _source_type(s, source, type_)
    if len(ctx.problems) > before or source is None or type_ is None or address < 0:
        return None
    end = address + (length if type_ == "string" else TYPES[type_].registers) - 1
    if end > _MAX_ADDRESS:
        ctx.problem(path, f"{type_} at {address} ends at {end}, beyond {_MAX_ADDRESS}")
        return None
    return Point(address, name, source, type_, register, input_, scale, order,
                 s.optional_string("unit") or "", s.optional_string("description") or "",
                 length, value)


def _need(s: Section, key: str) -> int:
    s.ctx.problem(s.at(key), "required key missing")
    return -1


def _choice(s: Section, key: str, options: tuple[str, ...]) -> str | None:
    value = s.raw(key, required=True)
    if value is MISSING:
        return None
    if isinstance(value, str) and value in options:
        return value
    hint = difflib.get_close_matches(str(value), options, n=1) if isinstance(value, str) else []
    what = "source" if key == "source" else "type"
    tail = f" (did you mean {hint[0]!r}?)" if hint else ""
    s.ctx.problem(s.at(key), f"unknown {what} {show(value)}{tail}")
    return None


def _register(s: Section, name: str, register: str | None, input_: str | None,
              inputs: MappingABC[str, str | None]) -> str | None:
    if register is not None and input_ is not None:
        s.ctx.problem(s.at("input"), "give either register or input, not both")
        return register
    if input_ is not None:
        if input_ not in inputs:
            hint = difflib.get_close_matches(input_, sorted(inputs), n=1)
            tail = f" (did you mean {hint[0]!r}?)" if hint else " (the map has no inputs)"
            s.ctx.problem(s.at("input"), f"unknown input {input_!r}{tail}")
            return None
        return inputs[input_]
    if register is None and not name:
        s.ctx.problem(s.at("name"), f"required for source {s.data.get('source')}")
    return register or name or None


def _scale(s: Section, key: str) -> float:
    value = s.raw(key)
    if value is MISSING:
        return 1.0
    if isinstance(value, bool) or not isinstance(value, int | float) or value == 0 or (
            not math.isfinite(value)):
        return s.fail(key, "must be a non-zero number", value, 1.0)
    return float(value)


def _word_order(s: Section, key: str, type_: str | None) -> str:
    value = s.raw(key)
    if value is MISSING:
        return "ABCD"
    options = STRING_WORD_ORDERS if type_ == "string" else WORD_ORDERS
    if value not in options:
        what = f" for {type_}" if type_ == "string" else ""
        return s.fail(key, f"must be one of {', '.join(options)}{what}", value, "ABCD")
    return str(value)


def _length(s: Section, type_: str | None) -> int:
    if type_ != "string":
        if s.has("length"):
            s.ctx.problem(s.at("length"), "only for type string")
        return 0
    if not s.has("length"):
        _need(s, "length")
        return 0
    return s.integer("length", 0, 1, 125)


def _value(s: Section, source: str | None, type_: str | None,
           length: int) -> int | float | str | None:
    if source != "const":
        if s.has("value"):
            s.ctx.problem(s.at("value"), "only for source const")
        return None
    value = s.raw("value", required=True)
    if value is MISSING or type_ is None:
        return None
    if type_ == "string":
        if not isinstance(value, str):
            return s.fail("value", "must be a string", value, None)
        if len(value.encode("utf-8")) > 2 * length > 0:
            return s.fail("value", f"longer than {2 * length} bytes", value, None)
        return value
    dtype = TYPES[type_]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return s.fail("value", "must be a number", value, None)
    if dtype.kind == "int" and (not isinstance(value, int) or not dtype.lo <= value <= dtype.hi):
        return s.fail("value", f"must be an integer {dtype.lo}-{dtype.hi} for {type_}", value, None)
    return value


def _source_type(s: Section, source: str | None, type_: str | None) -> None:
    if source is None or type_ is None:
        return
    kind = TYPES[type_].kind
    if source.startswith("identity:") and kind != "string":
        s.ctx.problem(s.at("type"), f"must be string for source {source}", type_)
    elif (source in METER_SOURCES or source.startswith("status:")) and kind == "string":
        s.ctx.problem(s.at("type"), f"must be a number type for source {source}", type_)
    elif source == "unit_id" and kind != "int":
        s.ctx.problem(s.at("type"), "must be an integer type for source unit_id", type_)


def _auto(s: Section | None) -> Auto | None:
    if s is None:
        return None
    start = s.integer("start", 0, 0, _MAX_ADDRESS) if s.has("start") else _need(s, "start")
    raw = s.raw("slot", required=True)
    fields: list[SlotField] = []
    if isinstance(raw, list) and raw:
        for i, item in enumerate(raw):
            f = Section.of(s.ctx, join(s.at("slot"), i), item, _SLOT_KEYS)
            if f is None:
                continue
            source = _choice(f, "source", METER_SOURCES)
            type_ = _choice(f, "type", tuple(t for t, d in TYPES.items() if d.kind != "string"))
            if source and type_:
                fields.append(SlotField(source, type_, _scale(f, "scale"),
                                        _word_order(f, "word_order", type_)))
    elif raw is not MISSING:
        s.ctx.problem(s.at("slot"), "must be a non-empty list of {source, type}", raw)
    if start < 0 or not fields:
        return None
    return Auto(start, tuple(fields))


def _overlaps(ctx: Context, labelled: list[tuple[str, Point]]) -> None:
    ordered = sorted(labelled, key=lambda lp: lp[1].address)
    last: tuple[str, Point] | None = None
    for label, p in ordered:
        if last is not None and p.address <= last[1].end:
            other, q = last
            ctx.problem(label, f"addresses {p.address}-{p.end} overlap {other} "
                               f"({q.address}-{q.end})")
        if last is None or p.end > last[1].end:
            last = (label, p)
