"""Modbus data types and word orders: a value -> the bytes of its registers on the wire.

A value of N bytes is first written big-endian (most significant byte first, bytes
``A B C D ...``), then its registers are arranged by the word order:

- ``ABCD``: registers high word first, each register high byte first (SunSpec, eGauge).
- ``CDAB``: registers low word first ("word swap"), each register high byte first.
- ``BADC``: registers high word first, each register low byte first ("byte swap").
- ``DCBA``: every byte reversed (little-endian).

For one-register types ``ABCD`` and ``CDAB`` are the same, as are ``BADC`` and ``DCBA``.
Strings are two characters per register, NUL-padded; only ``ABCD`` and ``BADC`` apply.

A value that is missing, NaN, or does not fit the type is written as the type's
"not available" pattern (SunSpec's): NaN for floats, the smallest value for signed integers
(0x8000...), the largest for unsigned ones (0xFFFF...), NULs for strings.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Final

WORD_ORDERS: Final = ("ABCD", "CDAB", "BADC", "DCBA")
STRING_WORD_ORDERS: Final = ("ABCD", "BADC")

Value = int | float | str | None


@dataclass(frozen=True, slots=True)
class DataType:
    """One Modbus data type: its size in registers and how it packs."""

    name: str
    registers: int  # 0 for string (its length is given per point)
    fmt: str = ""  # struct format character; "" for string
    kind: str = "int"  # int | float | string
    lo: int = 0
    hi: int = 0

    @property
    def na(self) -> int | float | None:
        """The "not available" value (``None`` for strings: all NULs)."""
        if self.kind == "float":
            return math.nan
        if self.kind == "string":
            return None
        return self.lo if self.lo < 0 else self.hi


def _int(name: str, fmt: str, bits: int, signed: bool) -> DataType:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return DataType(name, bits // 16, fmt, "int", lo, hi)


TYPES: Final[dict[str, DataType]] = {
    t.name: t
    for t in (
        _int("int16", "h", 16, True),
        _int("uint16", "H", 16, False),
        _int("int32", "i", 32, True),
        _int("uint32", "I", 32, False),
        _int("int64", "q", 64, True),
        _int("uint64", "Q", 64, False),
        DataType("float32", 2, "f", "float"),
        DataType("float64", 4, "d", "float"),
        DataType("string", 0, "", "string"),
    )
}


def _permutation(order: str, registers: int) -> tuple[int, ...] | None:
    """Indices into the big-endian bytes that give the bytes on the wire (None: as is)."""
    words = list(range(registers))
    if order in ("CDAB", "DCBA"):
        words.reverse()
    swap = order in ("BADC", "DCBA")
    perm = tuple(2 * w + (1 - b if swap else b) for w in words for b in (0, 1))
    return None if perm == tuple(range(2 * registers)) else perm


class Codec:
    """Encodes values of one type, word order and scale; built once per mapping point.

    ``scale`` is what a client multiplies the register value by to get the physical value:
    the gateway writes ``value / scale`` (rounded to the nearest integer for integer types).
    """

    __slots__ = ("_pack", "_perm", "dtype", "length", "na", "scale", "size", "word_order")

    def __init__(self, dtype: DataType, word_order: str = "ABCD", scale: float = 1.0,
                 length: int = 0) -> None:
        if word_order not in WORD_ORDERS:
            raise ValueError(f"unknown word order {word_order!r}")
        if dtype.kind == "string" and word_order not in STRING_WORD_ORDERS:
            raise ValueError(f"word order {word_order} does not apply to strings")
        if scale == 0 or not math.isfinite(scale):
            raise ValueError("scale must be a finite non-zero number")
        self.dtype = dtype
        self.word_order = word_order
        self.scale = float(scale)
        self.size = length if dtype.kind == "string" else dtype.registers  # registers
        if self.size <= 0:
            raise ValueError("a string needs a length of at least one register")
        self.length = length
        nbytes = 2 * self.size
        perm = _permutation(word_order, self.size)
        self._perm: Callable[[bytes], tuple[int, ...]] | None = (
            None if perm is None else itemgetter(*perm)
        )
        self._pack = struct.Struct(">" + dtype.fmt).pack if dtype.fmt else None
        self.na = b"\0" * nbytes if dtype.kind == "string" else self._order(self._raw(dtype.na))

    def encode(self, value: Value) -> bytes:
        """The bytes of ``value`` as they go on the wire; "not available" when it cannot be."""
        if value is None:
            return self.na
        kind = self.dtype.kind
        if kind == "string":
            return self._order(self._text(str(value)))
        if isinstance(value, str):
            return self.na
        if kind == "float":
            wire = value if self.scale == 1.0 else value / self.scale
            try:
                return self._order(self._raw(wire))
            except OverflowError:
                return self.na
        if isinstance(value, float):
            if not math.isfinite(value):
                return self.na
            number = round(value / self.scale)
        else:
            number = value if self.scale == 1.0 else round(value / self.scale)
        if not self.dtype.lo <= number <= self.dtype.hi:
            return self.na
        return self._order(self._raw(number))

    def writer(self) -> Callable[[bytearray, int, Value], None]:
        """A function that writes a value's wire bytes into a buffer at a byte offset: the
        hot path. Unscaled floats in ABCD or DCBA order pack straight into the buffer."""
        size = 2 * self.size
        if self.dtype.kind == "float" and self.scale == 1.0 and self.word_order in ("ABCD",
                                                                                    "DCBA"):
            pack_into = struct.Struct(("<" if self.word_order == "DCBA" else ">")
                                      + self.dtype.fmt).pack_into
            na = self.na

            def write_float(buf: bytearray, off: int, value: Value) -> None:
                if value is None or isinstance(value, str):
                    buf[off:off + size] = na
                    return
                try:
                    pack_into(buf, off, value)
                except OverflowError:
                    buf[off:off + size] = na

            return write_float
        encode = self.encode

        def write(buf: bytearray, off: int, value: Value) -> None:
            buf[off:off + size] = encode(value)

        return write

    def _raw(self, value: int | float | None) -> bytes:
        assert self._pack is not None
        return self._pack(value)

    def _text(self, text: str) -> bytes:
        limit = 2 * self.size
        data = text.encode("utf-8")
        if len(data) > limit:
            data = data[:limit].decode("utf-8", "ignore").encode("utf-8")
        return data.ljust(limit, b"\0")

    def _order(self, data: bytes) -> bytes:
        return data if self._perm is None else bytes(self._perm(data))
