"""Mapping files: the built-in maps, and every problem of a bad file as an exact line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gateway.errors import MappingError
from gateway.modbus import RegisterMap, builtin_path, load_mapping

POINT = "{address: 100, name: Grid, source: rate, type: float32}"


def load_text(tmp_path: Path, text: str) -> RegisterMap:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(str(path))


@pytest.mark.parametrize(("text", "problems"), [
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rate, type: float32, wordorder: ABCD}\n",
        ["registers[0].wordorder: unknown key (did you mean 'word_order'?)"], id="unknown-key"),
    pytest.param(
        "regsiters: []\n",
        ["regsiters: unknown key (did you mean 'registers'?)", "registers: required key missing"],
        id="misspelt-top-key"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rate, type: flaot32}\n",
        ["registers[0].type: unknown type 'flaot32' (did you mean 'float32'?)"], id="type"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rat, type: float32}\n",
        ["registers[0].source: unknown source 'rat' (did you mean 'rate'?)"], id="source"),
    pytest.param(
        "registers:\n - {address: 70000, name: a, source: rate, type: float32}\n",
        ["registers[0].address: must be an integer 0-65535 (got 70000)"], id="address-range"),
    pytest.param(
        "registers:\n - {name: a, source: rate, type: float32}\n",
        ["registers[0].address: required key missing"], id="address-missing"),
    pytest.param(
        "registers:\n - {address: 65535, name: a, source: rate, type: float32}\n",
        ["registers[0]: float32 at 65535 ends at 65536, beyond 65535"], id="ends-beyond"),
    pytest.param(
        "registers:\n - {address: 100, name: a, source: rate, type: float32}\n"
        " - {address: 101, name: b, source: rate, type: uint16}\n",
        ["registers[1]: addresses 101-101 overlap registers[0] (100-101)"], id="overlap"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rate, type: float32, word_order: ABDC}\n",
        ["registers[0].word_order: must be one of ABCD, CDAB, BADC, DCBA (got 'ABDC')"],
        id="word-order"),
    pytest.param(
        "registers:\n - {address: 0, source: 'identity:serial', type: string, length: 4,"
        " word_order: CDAB}\n",
        ["registers[0].word_order: must be one of ABCD, BADC for string (got 'CDAB')"],
        id="string-word-order"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rate, type: int16, scale: 0}\n",
        ["registers[0].scale: must be a non-zero number (got 0)"], id="scale"),
    pytest.param(
        "registers:\n - {address: 0, source: 'identity:serial', type: string}\n",
        ["registers[0].length: required key missing"], id="string-length"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rate, type: float32, length: 2}\n",
        ["registers[0].length: only for type string"], id="length-not-string"),
    pytest.param(
        "registers:\n - {address: 0, source: const, type: uint16}\n",
        ["registers[0].value: required key missing"], id="const-value"),
    pytest.param(
        "registers:\n - {address: 0, source: const, type: uint16, value: 70000}\n",
        ["registers[0].value: must be an integer 0-65535 for uint16 (got 70000)"],
        id="const-range"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rate, type: float32, value: 1}\n",
        ["registers[0].value: only for source const"], id="value-not-const"),
    pytest.param(
        "registers:\n - {address: 0, source: 'identity:serial', type: float32}\n",
        ["registers[0].type: must be string for source identity:serial (got 'float32')"],
        id="identity-type"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: rate, type: string, length: 2}\n",
        ["registers[0].type: must be a number type for source rate (got 'string')"],
        id="rate-string"),
    pytest.param(
        "registers:\n - {address: 0, source: rate, type: float32}\n",
        ["registers[0].name: required for source rate"], id="rate-needs-name"),
    pytest.param(
        "registers:\n - {address: 0, name: a, source: 'status:online', type: uint16,"
        " register: Grid}\n",
        ["registers[0].register: only for sources rate, cumulative, raw, import, export, "
         "import_rate, export_rate"], id="register-status"),
    pytest.param(
        "inputs: {power: Grid}\nregisters:\n - {address: 0, input: pwr, source: rate,"
        " type: float32}\n",
        ["registers[0].input: unknown input 'pwr' (did you mean 'power'?)"], id="input"),
    pytest.param(
        "registers: {a: 1}\n",
        ["registers: must be a list of register entries (got {'a': 1})"], id="registers-type"),
    pytest.param(
        f"registers: [{POINT}]\nauto: {{start: 100, slot: [{{source: rate, type: flot32}}]}}\n",
        ["auto.slot[0].type: unknown type 'flot32' (did you mean 'float32'?)"],
        id="auto-slot-type"),
    pytest.param(
        "extends: sunspec\ninputs: {powr: Mains}\n",
        ["inputs.powr: unknown input of sunspec (did you mean 'power'?)"], id="extends-input"),
    pytest.param(
        "extends: sunspec\nregisters:\n - {address: 40001, name: a, source: rate,"
        " type: uint16}\n",
        ["registers[0]: addresses 40001-40001 overlap sunspec point 'SunS' (40000-40001)"],
        id="extends-overlap"),
    pytest.param(
        "extends: sunspek\n",
        ["extends: must be one of default, sunspec (got 'sunspek')"], id="extends-name"),
    pytest.param(
        "- 1\n- 2\n",
        ["(top level): must be a mapping with a registers list (got [1, 2])"], id="not-a-map"),
])
def test_problem_lines(tmp_path: Path, text: str, problems: list[str]) -> None:
    with pytest.raises(MappingError) as caught:
        load_text(tmp_path, text)
    assert list(caught.value.problems) == problems
    assert caught.value.source == str(tmp_path / "map.yaml")


def test_every_problem_at_once(tmp_path: Path) -> None:
    text = (
        "registers:\n"
        " - {address: 0, name: a, source: rate, type: flaot32}\n"
        " - {address: 10, name: b, source: rate, type: float32, scale: 0}\n"
        " - {address: 20, name: c, source: rate, type: float64}\n"
        " - {address: 22, name: d, source: rate, type: uint16}\n"
        " - {address: 30, name: e, source: rate, type: int16, colour: red}\n"
    )
    with pytest.raises(MappingError) as caught:
        load_text(tmp_path, text)
    assert list(caught.value.problems) == [
        "registers[0].type: unknown type 'flaot32' (did you mean 'float32'?)",
        "registers[1].scale: must be a non-zero number (got 0)",
        "registers[4].colour: unknown key",
        "registers[3]: addresses 22-22 overlap registers[2] (20-23)",
    ]


def test_yaml_syntax_error_is_one_problem_line(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        load_text(tmp_path, "registers: [\n")
    (line,) = caught.value.problems
    assert line.startswith(str(tmp_path / "map.yaml"))


def test_unknown_builtin_name() -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping("sunspek")
    assert caught.value.problems == (
        "unknown built-in mapping 'sunspek' (did you mean 'sunspec'?)",)


def test_missing_file_is_a_mapping_error(tmp_path: Path) -> None:
    with pytest.raises(MappingError):
        load_mapping(str(tmp_path / "absent.yaml"))


@pytest.mark.parametrize("name", ["default", "sunspec"])
def test_builtin_maps_load_from_the_package(name: str) -> None:
    assert builtin_path(name).is_file()
    rmap = load_mapping(name)
    status = {p.source: p.address for p in rmap.points if p.source.startswith("status:")}
    # the status block is the same, at fixed addresses, in every built-in map
    assert status == {"status:online": 0, "status:age": 1, "status:timestamp": 2,
                      "status:timestamp_us": 4, "status:failed_polls": 6}


def test_default_map_auto_slot() -> None:
    auto = load_mapping("default").auto
    assert auto is not None
    assert (auto.start, auto.stride) == (100, 6)
    assert [(f.source, f.type) for f in auto.slot] == [("rate", "float32"),
                                                       ("cumulative", "float64")]


def test_extends_overrides_inputs(tmp_path: Path) -> None:
    rmap = load_text(tmp_path, "extends: sunspec\ninputs: {power: Mains, voltage_a: null}\n")
    by_name = {p.name: p for p in rmap.points if p.address >= 40000}
    assert by_name["W"].register == "Mains"
    assert by_name["PhVphA"].register is None  # unset: reads "not implemented"
    assert by_name["TotWhImp"].register == "Grid"  # untouched inputs keep the default
    assert rmap.auto is None


def test_extends_adds_points(tmp_path: Path) -> None:
    rmap = load_text(tmp_path, "extends: sunspec\nregisters:\n"
                               " - {address: 500, name: Solar+, source: rate, type: float32}\n")
    assert any(p.address == 500 and p.register == "Solar+" for p in rmap.points)


def test_const_hex_and_float_values(tmp_path: Path) -> None:
    rmap = load_text(tmp_path, "registers:\n"
                               " - {address: 0, source: const, type: uint16, value: 0xFFFF}\n"
                               " - {address: 1, source: const, type: float32, value: .nan}\n")
    values = [p.value for p in rmap.points]
    assert values[0] == 65535
    assert math.isnan(values[1])
