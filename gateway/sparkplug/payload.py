"""Sparkplug B payloads as the project's own frozen types, and their protobuf encoding.

The gateway's only protobuf user: :func:`encode` and :func:`decode` convert between
:class:`Payload` and the wire format of ``sparkplug_b.proto`` (gencode ``sparkplug_b_pb2``).
A value goes into the schema's ``oneof`` by its data type as Sparkplug 3.0.0 §6.4.16 sets it:
8- to 32-bit integers in ``int_value`` (uint32; signed ones as two's complement), 64-bit
integers and DateTime in ``long_value`` (uint64, likewise), Float, Double, Boolean and the
string types in their own fields; ``None`` is sent as ``is_null``. Decoding reads whichever
value field is set (senders disagree on UInt32) and, with a data type, restores the sign.
Untrusted bytes never raise anything but :class:`~gateway.errors.SparkplugPayloadError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from google.protobuf.message import DecodeError, Message

from gateway.errors import SparkplugPayloadError
from gateway.sparkplug import sparkplug_b_pb2 as pb

MAX_PAYLOAD: Final = 256 * 1024  # bytes: a received payload beyond this is refused undecoded
_MASK32: Final = (1 << 32) - 1
_MASK64: Final = (1 << 64) - 1


class DataType(IntEnum):
    """The Sparkplug data types the gateway sends or reads (§6.4.16)."""

    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    BYTES = 17


_SMALL_INTS: Final = frozenset({DataType.INT8, DataType.INT16, DataType.INT32, DataType.UINT8,
                                DataType.UINT16, DataType.UINT32})
_LONG_INTS: Final = frozenset({DataType.INT64, DataType.UINT64, DataType.DATETIME})
_SIGNED_BITS: Final = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32,
                       DataType.INT64: 64}
_STRINGS: Final = frozenset({DataType.STRING, DataType.TEXT, DataType.UUID})

Value = bool | int | float | str | bytes | None


@dataclass(frozen=True, slots=True)
class Property:
    """One entry of a metric's PropertySet (``engUnit``, ...)."""

    key: str
    datatype: DataType
    value: Value


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric. Births carry ``name``, ``alias`` and ``datatype``; data messages the alias.
    ``value`` None means null. ``timestamp`` is in ms since the Unix epoch (UTC)."""

    name: str | None = None
    alias: int | None = None
    datatype: DataType | None = None
    value: Value = None
    timestamp: int | None = None
    historical: bool = False
    properties: tuple[Property, ...] = ()
    datatype_code: int | None = None  # a received data type the gateway does not know


@dataclass(frozen=True, slots=True)
class Payload:
    """One Sparkplug B payload; ``seq`` is None for NDEATH and commands."""

    metrics: tuple[Metric, ...] = ()
    timestamp: int | None = None
    seq: int | None = None


# -- encoding ------------------------------------------------------------------------------


def encode(payload: Payload) -> bytes:
    """The protobuf bytes of ``payload``; ValueError for a value its data type cannot hold."""
    out = pb.Payload()
    if payload.timestamp is not None:
        out.timestamp = payload.timestamp
    if payload.seq is not None:
        out.seq = payload.seq
    for metric in payload.metrics:
        m = out.metrics.add()
        if metric.name is not None:
            m.name = metric.name
        if metric.alias is not None:
            m.alias = metric.alias
        if metric.timestamp is not None:
            m.timestamp = metric.timestamp
        if metric.datatype is not None:
            m.datatype = metric.datatype
        if metric.historical:
            m.is_historical = True
        for prop in metric.properties:
            m.properties.keys.append(prop.key)
            value = m.properties.values.add()
            value.type = prop.datatype
            _put(value, prop.datatype, prop.value)
        if metric.datatype is not None:
            _put(m, metric.datatype, metric.value)
    return out.SerializeToString()


def _put(target: pb.Payload.Metric | pb.Payload.PropertyValue, datatype: DataType,
         value: Value) -> None:
    if value is None:
        target.is_null = True
    elif datatype is DataType.BOOLEAN:
        target.boolean_value = bool(value)
    elif datatype in _SMALL_INTS and isinstance(value, int):
        target.int_value = value & _MASK32
    elif datatype in _LONG_INTS and isinstance(value, int):
        target.long_value = value & _MASK64
    elif datatype is DataType.FLOAT and isinstance(value, int | float):
        target.float_value = float(value)
    elif datatype is DataType.DOUBLE and isinstance(value, int | float):
        target.double_value = float(value)
    elif datatype in _STRINGS and isinstance(value, str):
        target.string_value = value
    elif (datatype is DataType.BYTES and isinstance(value, bytes)
          and isinstance(target, pb.Payload.Metric)):
        target.bytes_value = value
    else:
        raise ValueError(f"a {datatype.name} cannot hold {type(value).__name__} {value!r}")


# -- decoding ------------------------------------------------------------------------------


def decode(data: bytes) -> Payload:
    """The payload in ``data`` (an NCMD or DCMD from the broker: untrusted);
    :class:`SparkplugPayloadError` when it is too large or not a Sparkplug B payload."""
    if len(data) > MAX_PAYLOAD:
        raise SparkplugPayloadError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    try:
        raw = pb.Payload.FromString(data)
        metrics = tuple(_metric(m) for m in raw.metrics)
    except (DecodeError, ValueError, TypeError, RuntimeError) as exc:
        raise SparkplugPayloadError(f"not a Sparkplug B payload: {exc}") from exc
    return Payload(
        metrics,
        raw.timestamp if raw.HasField("timestamp") else None,
        raw.seq if raw.HasField("seq") else None,
    )


def _metric(m: pb.Payload.Metric) -> Metric:
    code = m.datatype if m.HasField("datatype") else None
    datatype = _known(code)
    props = tuple(
        Property(key, _known(v.type) or DataType.STRING, _value(v, _known(v.type)))
        for key, v in zip(m.properties.keys, m.properties.values, strict=False)
    )
    return Metric(
        name=m.name if m.HasField("name") else None,
        alias=m.alias if m.HasField("alias") else None,
        datatype=datatype,
        value=_value(m, datatype),
        timestamp=m.timestamp if m.HasField("timestamp") else None,
        historical=m.is_historical,
        properties=props,
        datatype_code=code if code is not None and datatype is None else None,
    )


def _known(code: int | None) -> DataType | None:
    if code is None:
        return None
    try:
        return DataType(code)
    except ValueError:
        return None


def _value(m: pb.Payload.Metric | pb.Payload.PropertyValue, datatype: DataType | None) -> Value:
    """The value of a received metric or property (None: null, or a kind the gateway does
    not read: DataSet, Template, PropertySet, extensions)."""
    if m.is_null:
        return None
    field = m.WhichOneof("value")
    if field is None:
        return None
    value = getattr(m, field)
    if isinstance(value, Message):
        return None
    if isinstance(value, bool | float | str | bytes):
        return value
    if isinstance(value, int):
        bits = _SIGNED_BITS.get(datatype) if datatype is not None else None
        if bits is not None:
            value &= (1 << bits) - 1
            return value - (1 << bits) if value >= 1 << (bits - 1) else value
        return value
    return None
