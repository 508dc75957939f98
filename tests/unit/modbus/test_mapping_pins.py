"""Auto-pinning: a register name keeps its slot across register-set changes and restarts.

The rule under test (docs/MODBUS.md): in the ``default`` map the k-th name ever seen for a
meter gets slot k, its rate at ``100 + 6k`` and its cumulative value at ``102 + 6k``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import EnergyConfig, MeterConfig, ModbusConfig
from gateway.errors import MappingError
from gateway.modbus import ModbusOutput, load_mapping
from gateway.modbus.layout import Layout, usable_slots
from gateway.modbus.pins import Pins, PinStore
from gateway.model import RegisterInfo
from gateway.secret import Secret


def meter(meter_id: str = "main", unit: int = 1, mapping: str = "default",
          energy: bool = False) -> MeterConfig:
    """A meter; without ``energy`` its registers have no counters (and so no counter
    slots: the tests of the register slots see only those)."""
    return MeterConfig(id=meter_id, url="http://127.0.0.1:1", username="owner",
                       password=Secret("pw"), modbus_unit_id=unit, modbus_mapping=mapping,
                       energy=EnergyConfig(enabled=energy))


def infos(*names: str) -> tuple[RegisterInfo, ...]:
    return tuple(RegisterInfo(name, "P", idx) for idx, name in enumerate(names))


def addresses(output: ModbusOutput, meter_id: str = "main") -> dict[tuple[str, str], int]:
    return {(p.register, p.source): p.address for p in output.layout(meter_id).points
            if p.register is not None}


def expected(slot: int) -> dict[str, int]:
    return {"rate": 100 + 6 * slot, "cumulative": 102 + 6 * slot}


async def test_addresses_survive_reorder_removal_addition_and_restart(tmp_path: Path) -> None:
    first = ModbusOutput(ModbusConfig(), [meter()], tmp_path)
    first.on_registers("main", infos("use", "Grid", "Solar+"))
    before = addresses(first)
    assert {k: v for k, v in before.items() if k[0] == "Grid"} == {
        ("Grid", s): a for s, a in expected(1).items()}
    await first.close()  # persists the pins

    second = ModbusOutput(ModbusConfig(), [meter()], tmp_path)  # a restart
    assert addresses(second) == before
    # the meter is reconfigured: reordered, "use" removed, "Panel A/B" added first
    second.on_registers("main", infos("Panel A/B", "Solar+", "Grid"))
    after = addresses(second)
    for key, address in before.items():
        assert after[key] == address  # nothing moved, "use" keeps its slot
    assert after[("Panel A/B", "rate")] == expected(3)["rate"]
    await second.close()

    third = ModbusOutput(ModbusConfig(), [meter()], tmp_path)
    assert addresses(third) == after


def test_new_names_from_readings_are_pinned_too(tmp_path: Path) -> None:
    from gateway.model import Reading, RegisterValue

    output = ModbusOutput(ModbusConfig(), [meter()], tmp_path)
    output.on_reading(Reading("main", 1.0, (RegisterValue("Grid", "P", "W", 1.0, 0.0, "kWh"),)))
    assert addresses(output)[("Grid", "rate")] == 100


def test_pins_file_round_trip(tmp_path: Path) -> None:
    store = PinStore(tmp_path)
    pins = Pins("main")
    assert pins.assign([("Grid", "P"), ("Temp Büro", "T"), ("Amps #1", "I")], range(10)) == [
        "Grid", "Temp Büro", "Amps #1"]
    store.save(pins)
    data = json.loads(store.path("main").read_text(encoding="utf-8"))
    assert (data["version"], data["kind"], data["meter"]) == (2, "modbus", "main")
    assert data["pins"] == {"Grid": {"slot": 0, "type": "P"},
                             "Temp Büro": {"slot": 1, "type": "T"},
                             "Amps #1": {"slot": 2, "type": "I"}}
    assert store.load("main").items() == pins.items()
    assert [p.name for p in tmp_path.joinpath("modbus").iterdir()] == ["main.json"]  # no leftovers


def test_a_version_1_pin_file_keeps_every_address(tmp_path: Path) -> None:
    """The format earlier releases wrote: read as it is, rewritten as version 2 unchanged."""
    legacy = tmp_path / "modbus" / "main.json"
    legacy.parent.mkdir()
    legacy.write_text('{"version": 1, "meter": "main", "slots": {\n'
                      '  "Grid": {"slot": 4, "type": "P"},\n'
                      '  "use": {"slot": 0, "type": "P"}\n}}\n')
    output = ModbusOutput(ModbusConfig(), [meter()], tmp_path)
    assert addresses(output) == {("use", "rate"): 100, ("use", "cumulative"): 102,
                                 ("Grid", "rate"): 124, ("Grid", "cumulative"): 126}
    output.on_registers("main", infos("Solar+", "Grid", "use"))
    output.flush()
    data = json.loads(legacy.read_text())
    assert data["version"] == 2
    assert data["pins"] == {"use": {"slot": 0, "type": "P"}, "Solar+": {"slot": 1, "type": "P"},
                            "Grid": {"slot": 4, "type": "P"}}


def test_assign_skips_taken_slots_and_keeps_known_names() -> None:
    pins = Pins("m")
    pins.assign([("a", "P"), ("b", "P")], range(5))
    assert pins.assign([("b", "P"), ("c", "V"), ("a", "P")], range(5)) == ["c"]
    assert [(n, p.slot) for n, p in pins.items()] == [("a", 0), ("b", 1), ("c", 2)]


@pytest.mark.parametrize("content", [
    "{not json", '{"slots": []}', '{"slots": {"a": {"slot": 1}, "b": {"slot": 1}}}',
    '{"slots": {"a": {"slot": -1}}}',
])
def test_damaged_pin_file_refuses_to_start(tmp_path: Path, content: str) -> None:
    store = PinStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.path("main").write_text(content)
    with pytest.raises(MappingError) as caught:
        ModbusOutput(ModbusConfig(), [meter()], tmp_path)
    assert caught.value.problems[0].startswith(f"{store.path('main')}: not a valid pin file")


def test_auto_slots_avoid_explicit_points(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("registers:\n - {address: 106, name: Grid, source: rate, type: float32}\n"
                    "auto: {start: 100, slot: [{source: rate, type: float32}, "
                    "{source: cumulative, type: float64}]}\n")
    slots = usable_slots(load_mapping(str(path)))
    assert [next(slots) for _ in range(3)] == [0, 2, 3]  # slot 1 (106-111) holds Grid
    output = ModbusOutput(ModbusConfig(), [meter(mapping=str(path))], tmp_path)
    output.on_registers("main", infos("Solar+", "Grid", "use"))
    assert [(p.register, p.source, p.address) for p in output.layout("main").points] == [
        ("Solar+", "rate", 100), ("Solar+", "cumulative", 102), ("Grid", "rate", 106),
        ("use", "rate", 112), ("use", "cumulative", 114)]  # Grid is mapped: never auto-pinned


def test_a_pinned_slot_that_now_collides_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("registers:\n - {address: 100, name: Other, source: rate, type: uint16}\n"
                    "auto: {start: 100, slot: [{source: rate, type: float32}]}\n")
    pins = Pins("m", None)
    pins.assign([("Grid", "P")], [0])  # pinned before the map gained the point at 100
    layout = Layout.build(load_mapping(str(path)), pins)
    assert layout.dropped == ("Grid",)
    assert [p.register for p in layout.points] == ["Other"]


async def test_a_failed_pin_write_is_logged_and_kept_pending(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    output = ModbusOutput(ModbusConfig(), [meter()], tmp_path)
    (tmp_path / "modbus").write_text("in the way")  # the state directory cannot be created
    output.on_registers("main", infos("Grid"))
    with capture_logs() as logs:
        await output.close()
    failed = [e for e in logs if e["event"] == "modbus_pins_not_saved"]
    assert [(e["meter"], e["log_level"]) for e in failed] == [("main", "error")]
    (tmp_path / "modbus").unlink()
    await output.close()  # still pending: written once the directory can be made
    assert PinStore(tmp_path).load("main").get("Grid") is not None


def test_two_meters_on_one_unit_id_are_refused(tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        ModbusOutput(ModbusConfig(), [meter("a", 3), meter("b", 3)], tmp_path)
    assert caught.value.problems == ("meters: unit id 3 of 'b' is also 'a''s",)


def test_only_polled_registers_get_slots(tmp_path: Path) -> None:
    from dataclasses import replace

    selective = replace(meter(), registers=("Solar+", "Grid"))
    output = ModbusOutput(ModbusConfig(), [selective], tmp_path)
    output.on_registers("main", infos("use", "Grid", "gen", "Solar+"))
    assert addresses(output) == {("Grid", "rate"): 100, ("Grid", "cumulative"): 102,
                                 ("Solar+", "rate"): 106, ("Solar+", "cumulative"): 108}


def test_units_with_the_same_slots_share_their_points_and_keep_their_addresses(
        tmp_path: Path) -> None:
    output = ModbusOutput(ModbusConfig(), [meter("a", 1), meter("b", 2), meter("c", 3)],
                          tmp_path)
    output.on_registers("a", infos("use", "Grid"))
    output.on_registers("b", infos("use", "Grid"))
    output.on_registers("c", infos("Grid", "use"))  # the other order: other slots
    a, b, c = (output.layout(m).points for m in ("a", "b", "c"))
    assert addresses(output, "a") == addresses(output, "b")
    assert all(p is q for p, q in zip(a, b, strict=True))  # one set of points for both
    alone = Layout.build(load_mapping("default"), output_pins(output, "a"))
    assert alone.points == a  # equal to the points a unit would make on its own
    assert addresses(output, "c")[("Grid", "rate")] == expected(0)["rate"]
    assert addresses(output, "a")[("Grid", "rate")] == expected(1)["rate"]
    shared = {id(p) for p in a} & {id(p) for p in c}
    assert all(p.register is None for p in a if id(p) in shared)  # the map's own points only


def output_pins(output: ModbusOutput, meter_id: str) -> Pins:
    pins = Pins(meter_id)
    for p in output.layout(meter_id).points:
        if p.register is not None and p.source == "rate":
            pins.assign([(p.register, "P")], [(p.address - 100) // 6])
    return pins
