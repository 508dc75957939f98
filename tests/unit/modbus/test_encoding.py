"""Data types and word orders: bytes on the wire, "not available" patterns, scale, strings.

Expected bytes are written out by hand from the definitions in docs/MODBUS.md (or built with
``struct`` and a word shuffle restated here), never taken from the encoder.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.modbus.codec import TYPES, Codec


def codec(type_: str, order: str = "ABCD", scale: float = 1.0, length: int = 0) -> Codec:
    return Codec(TYPES[type_], order, scale, length)


def arrange(big_endian: bytes, order: str) -> bytes:
    """The definition: split into 16-bit words; C.. first reverses words, .A/..A swaps bytes."""
    words = [big_endian[i:i + 2] for i in range(0, len(big_endian), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


@pytest.mark.parametrize(("type_", "value", "order", "wire"), [
    ("float32", 1.0, "ABCD", "3f80 0000"),
    ("float32", 1.0, "CDAB", "0000 3f80"),
    ("float32", 1.0, "BADC", "803f 0000"),
    ("float32", 1.0, "DCBA", "0000 803f"),
    ("int32", 0x01020304, "ABCD", "0102 0304"),
    ("int32", 0x01020304, "CDAB", "0304 0102"),
    ("int32", 0x01020304, "BADC", "0201 0403"),
    ("int32", 0x01020304, "DCBA", "0403 0201"),
    ("uint64", 0x0102030405060708, "ABCD", "0102 0304 0506 0708"),
    ("uint64", 0x0102030405060708, "CDAB", "0708 0506 0304 0102"),
    ("uint64", 0x0102030405060708, "BADC", "0201 0403 0605 0807"),
    ("uint64", 0x0102030405060708, "DCBA", "0807 0605 0403 0201"),
    ("uint16", 0x1234, "ABCD", "1234"),
    ("uint16", 0x1234, "CDAB", "1234"),
    ("uint16", 0x1234, "BADC", "3412"),
    ("int16", -2, "ABCD", "fffe"),
    ("int64", -1, "CDAB", "ffff ffff ffff ffff"),
    ("float64", 1.0, "ABCD", "3ff0 0000 0000 0000"),
    ("float64", 1.0, "CDAB", "0000 0000 0000 3ff0"),
    ("uint32", 1400204883, "ABCD", "5375 6e53"),  # the SunSpec marker "SunS"
])
def test_bytes_on_the_wire(type_: str, value: float, order: str, wire: str) -> None:
    assert codec(type_, order).encode(value) == bytes.fromhex(wire.replace(" ", ""))


@pytest.mark.parametrize(("type_", "wire"), [
    ("int16", "8000"), ("uint16", "ffff"), ("int32", "8000 0000"), ("uint32", "ffff ffff"),
    ("int64", "8000 0000 0000 0000"), ("uint64", "ffff ffff ffff ffff"),
])
def test_missing_values_read_not_available(type_: str, wire: str) -> None:
    assert codec(type_).encode(None) == bytes.fromhex(wire.replace(" ", ""))


@pytest.mark.parametrize("type_", ["float32", "float64"])
def test_missing_floats_are_nan(type_: str) -> None:
    fmt = ">f" if type_ == "float32" else ">d"
    for value in (None, math.nan):
        (decoded,) = struct.unpack(fmt, codec(type_).encode(value))
        assert math.isnan(decoded)


@pytest.mark.parametrize(("type_", "value", "wire"), [
    ("uint16", 70000, "ffff"),  # too large: not available, never wrapped
    ("uint16", -1, "ffff"),
    ("int16", -40000, "8000"),
    ("int32", 2**31, "8000 0000"),
    ("uint32", math.inf, "ffff ffff"),
    ("float32", 1e39, "7fc0 0000"),  # beyond float32
    ("uint16", "text", "ffff"),
])
def test_values_that_do_not_fit_read_not_available(type_: str, value: float, wire: str) -> None:
    assert codec(type_).encode(value) == bytes.fromhex(wire.replace(" ", ""))


def test_scale_divides_and_rounds_for_integers() -> None:
    # scale 0.1: a client multiplies by 0.1, so 230.47 V goes out as 2305
    assert codec("int16", scale=0.1).encode(230.47) == (2305).to_bytes(2, "big")
    assert codec("int32", scale=0.001).encode(-1.5) == (-1500).to_bytes(4, "big", signed=True)
    assert codec("uint16", scale=10).encode(12345.0) == (1234).to_bytes(2, "big")


def test_scale_applies_to_floats() -> None:
    assert codec("float32", scale=1000).encode(2500.0) == struct.pack(">f", 2.5)


def test_exact_int64_counters_stay_exact() -> None:
    raw = 2**62 + 12345  # beyond a double's 53-bit mantissa
    assert codec("int64").encode(raw) == raw.to_bytes(8, "big", signed=True)


@pytest.mark.parametrize(("text", "order", "length", "wire"), [
    ("eGauge", "ABCD", 4, b"eGauge\0\0"),
    ("eGauge", "BADC", 4, b"Geuaeg\0\0"),
    ("abcdefghij", "ABCD", 2, b"abcd"),
    ("Büro", "ABCD", 2, b"B\xc3\xbcr"),  # UTF-8, cut at a character boundary
    ("Bür", "ABCD", 1, b"B\0"),  # "ü" would not fit whole
    ("", "ABCD", 2, b"\0\0\0\0"),
])
def test_strings(text: str, order: str, length: int, wire: bytes) -> None:
    assert codec("string", order, length=length).encode(text) == wire


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"word_order": "ABDC"}, "unknown word order"),
    ({"scale": 0.0}, "scale"),
    ({"scale": math.nan}, "scale"),
])
def test_bad_codec_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Codec(TYPES["float32"], **kwargs)  # type: ignore[arg-type]


def test_strings_only_take_byte_orders() -> None:
    with pytest.raises(ValueError, match="does not apply"):
        Codec(TYPES["string"], "CDAB", length=2)


@given(st.floats(allow_nan=False, width=64), st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]))
def test_float64_round_trips_in_every_order(value: float, order: str) -> None:
    assert codec("float64", order).encode(value) == arrange(struct.pack(">d", value), order)


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]))
def test_int32_round_trips_in_every_order(value: int, order: str) -> None:
    assert codec("int32", order).encode(value) == arrange(struct.pack(">i", value), order)


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
@pytest.mark.parametrize(("type_", "scale"), [("float32", 1.0), ("float64", 1.0),
                                              ("float32", 0.5), ("int32", 1.0),
                                              ("uint16", 0.1)])
def test_buffer_writer_matches_encode_and_stays_in_place(type_: str, scale: float,
                                                         order: str) -> None:
    c = codec(type_, order, scale)
    write = c.writer()
    for value in (1234.5, -2.0, None, math.nan, 1e39, "text", 7):
        buf = bytearray(b"\xaa" * (2 * c.size + 4))
        write(buf, 2, value)
        assert bytes(buf[2:2 + 2 * c.size]) == c.encode(value), value
        assert buf[:2] == buf[-2:] == b"\xaa\xaa"
