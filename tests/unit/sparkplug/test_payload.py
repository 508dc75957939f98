"""The Sparkplug payload codec: values in the schema's fields as Sparkplug 3.0.0 sets them
(checked against protobuf's own view of the bytes), signed integers, nulls, and received
bytes that are not a payload."""

from __future__ import annotations

import pytest

from gateway.errors import SparkplugPayloadError
from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.payload import (
    MAX_PAYLOAD,
    DataType,
    Metric,
    Payload,
    Property,
    decode,
    encode,
)


def test_values_go_into_the_field_their_data_type_names() -> None:
    payload = Payload((
        Metric("i8", 1, DataType.INT8, -1, 10),
        Metric("i32", 2, DataType.INT32, -5, 10),
        Metric("i64", 3, DataType.INT64, -2, 10),
        Metric("u64", 4, DataType.UINT64, 2**64 - 1, 10),
        Metric("d", 5, DataType.DOUBLE, 1.5, 10, properties=(
            Property("engUnit", DataType.STRING, "kWh"),)),
        Metric("b", 6, DataType.BOOLEAN, True, 10),
        Metric("s", 7, DataType.STRING, "Büro", 10),
        Metric("null", 8, DataType.DOUBLE, None, 10),
        Metric(alias=9, datatype=DataType.DOUBLE, value=2.0, timestamp=11, historical=True),
    ), 12, 0)
    raw = pb.Payload.FromString(encode(payload))
    assert (raw.timestamp, raw.seq) == (12, 0)
    m = {metric.name or str(metric.alias): metric for metric in raw.metrics}
    assert m["i8"].WhichOneof("value") == "int_value"
    assert m["i8"].int_value == 0xFFFFFFFF  # two's complement in the uint32 field
    assert m["i32"].int_value == 2**32 - 5
    assert m["i64"].long_value == 2**64 - 2
    assert m["u64"].long_value == 2**64 - 1
    assert (m["d"].double_value, m["d"].datatype) == (1.5, 10)
    assert list(m["d"].properties.keys) == ["engUnit"]
    assert (m["d"].properties.values[0].type, m["d"].properties.values[0].string_value) == (
        12, "kWh")
    assert m["b"].boolean_value is True
    assert m["s"].string_value == "Büro"
    assert m["null"].is_null
    assert m["null"].WhichOneof("value") is None
    assert not m["9"].HasField("name")
    assert m["9"].is_historical
    assert not m["i8"].is_historical


def test_decoding_restores_signs_and_reads_every_value_field() -> None:
    raw = pb.Payload(timestamp=5)
    raw.metrics.add(name="i16", datatype=DataType.INT16, int_value=0xFFFF)
    raw.metrics.add(name="i64", datatype=DataType.INT64, long_value=2**64 - 3)
    raw.metrics.add(alias=4, boolean_value=True)  # no data type, as commands may come
    raw.metrics.add(name="u32 as long", datatype=DataType.UINT32, long_value=7)
    raw.metrics.add(name="dataset", datatype=16).dataset_value.num_of_columns = 1
    raw.metrics.add(name="odd type", datatype=99, int_value=1)
    metric = raw.metrics.add(name="props", datatype=DataType.BOOLEAN, boolean_value=False)
    metric.properties.keys.append("dry_run")
    metric.properties.values.add(type=DataType.BOOLEAN, boolean_value=True)
    payload = decode(raw.SerializeToString())
    assert payload.timestamp == 5
    assert payload.seq is None
    by = {m.name or m.alias: m for m in payload.metrics}
    assert by["i16"].value == -1
    assert by["i64"].value == -3
    assert (by[4].value, by[4].datatype) == (True, None)
    assert by["u32 as long"].value == 7
    assert by["dataset"].value is None  # a kind the gateway does not read
    assert (by["odd type"].datatype, by["odd type"].datatype_code) == (None, 99)
    assert by["props"].value is False
    assert by["props"].properties == (Property("dry_run", DataType.BOOLEAN, True),)


@pytest.mark.parametrize("data", [
    b"\xff\xff\xff",  # an invalid wire type
    b"\x12\x10\x0a",  # a metric cut short
    b"\x12\x02\x0a\xff",  # a name with a length beyond the metric
])
def test_bytes_that_are_no_payload_raise_one_error(data: bytes) -> None:
    with pytest.raises(SparkplugPayloadError, match="not a Sparkplug B payload"):
        decode(data)


def test_an_oversized_payload_is_refused_undecoded() -> None:
    with pytest.raises(SparkplugPayloadError, match="exceeds"):
        decode(b"\x00" * (MAX_PAYLOAD + 1))


def test_a_value_its_type_cannot_hold_is_an_error_when_encoding() -> None:
    with pytest.raises(ValueError, match="INT32 cannot hold str"):
        encode(Payload((Metric("x", 1, DataType.INT32, "seven"),)))
