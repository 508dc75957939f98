"""The unit image: which ranges answer, what they hold, and the status block (no sockets)."""

from __future__ import annotations

import struct
from pathlib import Path

from gateway.modbus import load_mapping
from gateway.modbus.image import ILLEGAL_ADDRESS, TARGET_FAILED, Codecs, UnitImage, unit_factor
from gateway.modbus.layout import Layout
from gateway.modbus.pins import Pins
from gateway.model import Availability, Identity, Reading, RegisterValue

NOW = 1_700_000_100.0


def image(tmp_path: Path, text: str, clock: float = NOW) -> UnitImage:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    return UnitImage(7, Layout.build(load_mapping(str(path)), Pins("m")), lambda: clock)


MAP = """\
registers:
  - {address: 0, name: online, source: "status:online", type: uint16}
  - {address: 1, name: age, source: "status:age", type: uint16}
  - {address: 2, name: ts, source: "status:timestamp", type: uint32}
  - {address: 4, name: us, source: "status:timestamp_us", type: uint32}
  - {address: 6, name: fails, source: "status:failed_polls", type: uint16}
  - {address: 10, name: Grid, source: rate, type: float32}
  - {address: 12, name: Grid, source: cumulative, type: float32, unit: Wh}
  - {address: 14, name: Grid, source: raw, type: int64}
  - {address: 18, name: Solar+, source: rate, type: int16, scale: 0.1}
  - {address: 30, source: "identity:serial", type: string, length: 4}
  - {address: 34, source: unit_id, type: uint16}
"""


def reading(ts: float, grid: float = -250.5, solar: float | None = 12.34) -> Reading:
    regs = [RegisterValue("Grid", "P", "W", grid, 1.5, "kWh", 5_400_000)]
    if solar is not None:
        regs.append(RegisterValue("Solar+", "P", "W", solar, 0.0, "kWh", 0))
    return Reading("m", ts, tuple(regs))


def ok(data: bytes | int) -> bytes:
    assert isinstance(data, bytes), f"exception {data}"
    return data


def words(data: bytes | int) -> tuple[int, ...]:
    return struct.unpack(f">{len(ok(data)) // 2}H", ok(data))


def test_gaps_and_ends_are_illegal_addresses(tmp_path: Path) -> None:
    img = image(tmp_path, MAP)
    img.apply_reading(reading(NOW - 1))
    assert img.read(0, 7) != ILLEGAL_ADDRESS
    assert img.read(0, 8) == ILLEGAL_ADDRESS  # 7 is not mapped
    assert img.read(7, 1) == ILLEGAL_ADDRESS
    assert img.read(10, 9) != ILLEGAL_ADDRESS  # 10-18 are contiguous
    assert img.read(10, 10) == ILLEGAL_ADDRESS
    assert img.read(65535, 1) == ILLEGAL_ADDRESS


def test_values_and_status(tmp_path: Path) -> None:
    img = image(tmp_path, MAP)
    ts = 1_700_000_097.25
    img.apply_identity(Identity("G1234567", "EG4030", "4.6"))
    img.apply_reading(reading(ts))
    online, age, ts_s, ts_us, fails = struct.unpack(">HHIIH", ok(img.read(0, 7)))
    assert (online, age, ts_s, ts_us, fails) == (1, 2, 1_700_000_097, 250_000, 0)
    rate, energy, raw, solar = struct.unpack(">ffqh", ok(img.read(10, 9)))
    assert rate == -250.5
    assert energy == 1500.0  # kWh -> Wh
    assert raw == 5_400_000
    assert solar == 123  # 12.34 / 0.1, rounded
    assert img.read(30, 5) == b"G1234567" + (7).to_bytes(2, "big")


def test_age_is_computed_at_read_time(tmp_path: Path) -> None:
    clock = [NOW]
    path = tmp_path / "map.yaml"
    path.write_text(MAP)
    img = UnitImage(1, Layout.build(load_mapping(str(path))), lambda: clock[0])
    img.apply_reading(reading(NOW - 3))
    assert words(img.read(1, 1)) == (3,)
    clock[0] += 10
    assert words(img.read(1, 1)) == (13,)
    clock[0] += 70_000
    assert words(img.read(1, 1)) == (0xFFFF,)  # saturates: "not available"


def test_offline_meter_answers_only_the_status_block(tmp_path: Path) -> None:
    img = image(tmp_path, MAP)
    assert img.read(10, 2) == TARGET_FAILED  # never polled yet
    assert words(img.read(0, 2)) == (0, 0xFFFF)  # offline, no data yet
    img.apply_reading(reading(NOW - 1))
    assert img.read(10, 2) != TARGET_FAILED
    img.apply_availability(Availability("m", False, NOW, "timeout", failed_polls=3))
    assert img.read(10, 2) == TARGET_FAILED
    assert img.read(30, 1) == TARGET_FAILED  # identity too: only status points stay readable
    assert words(img.read(0, 7))[0] == 0
    assert words(img.read(6, 1)) == (3,)
    img.apply_availability(Availability("m", True, NOW + 5))
    assert words(img.read(0, 1)) == (1,)
    assert img.read(10, 2) != TARGET_FAILED


def test_register_missing_from_a_reading_reads_not_available(tmp_path: Path) -> None:
    img = image(tmp_path, MAP)
    img.apply_reading(reading(NOW))
    assert words(img.read(18, 1)) == (123,)
    img.apply_reading(reading(NOW + 1, solar=None))
    assert words(img.read(18, 1)) == (0x8000,)


def test_unit_factor() -> None:
    assert unit_factor("kWh", "Wh") == 1000.0
    assert unit_factor("Wh", "kWh") == 0.001
    assert unit_factor("kvarh", "varh") == 1000.0
    assert unit_factor("W", "") == 1.0
    assert unit_factor("V", "A") is None


def test_unconvertible_unit_reads_not_available(tmp_path: Path) -> None:
    img = image(tmp_path, "registers:\n - {address: 0, name: T, source: rate, type: int16,"
                          " unit: W}\n")
    img.apply_reading(Reading("m", NOW, (RegisterValue("T", "T", "°C", 21.5, None, "°C·s"),)))
    assert words(img.read(0, 1)) == (0x8000,)


def test_units_share_their_codecs_and_keep_their_own_values(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(MAP, encoding="utf-8")
    codecs = Codecs()
    one, two = (UnitImage(unit, Layout.build(load_mapping(str(path)), Pins("m")),
                          lambda: NOW, codecs) for unit in (1, 2))
    slots = [s for img in (one, two) for s in img._meter_slots]
    floats = {id(s.codec) for s in slots if s.point.type == "float32"}
    assert len(floats) == 1  # every float32 point of both units, one codec
    scaled = {id(s.codec) for s in slots if s.point.type == "int16"}
    assert scaled.isdisjoint(floats)
    assert len(scaled) == 1
    one.apply_reading(reading(NOW - 1, grid=-250.5, solar=12.34))
    two.apply_reading(reading(NOW - 1, grid=99.0, solar=-3.0))
    assert struct.unpack(">f", ok(one.read(10, 2))) == (-250.5,)
    assert struct.unpack(">f", ok(two.read(10, 2))) == (99.0,)
    assert struct.unpack(">h", ok(one.read(18, 1))) == (123,)
    assert struct.unpack(">h", ok(two.read(18, 1))) == (-30,)
    assert one.read(34, 1) == (1).to_bytes(2, "big")
    assert two.read(34, 1) == (2).to_bytes(2, "big")
