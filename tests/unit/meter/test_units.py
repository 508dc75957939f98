"""Type codes, quanta and units (egauge-webapi §2.4), values typed in from the spec table."""

from __future__ import annotations

import json
import math

import pytest

from gateway.meter import decimals, quantized, rounded, type_code

# code: (rate unit, quantum) exactly as the spec's table lists them
SPEC = {
    "#": ("", 1), "#3": ("", 0.001), "%": ("%", 0.001), "$": ("$/s", 2**-29),
    "a": ("°", 0.001), "aq": ("", 0.001), "d": ("", 1), "Ee": ("W/m²", 1), "F": ("Hz", 0.001),
    "h": ("%", 0.001), "I": ("A", 0.001), "m": ("g", 0.001), "P": ("W", 1), "Pa": ("Pa", 1),
    "ppm": ("ppm", 0.001), "var": ("var", 1), "Q": ("g/s", 1), "Qe": ("Ah", 0.001),
    "Qv": ("m³/s", 1e-9), "R": ("Ω", 1), "S": ("VA", 1), "T": ("°C", 0.001),
    "THD": ("%", 0.001), "V": ("V", 0.001), "v": ("m/s", 0.001),
    # egauge-python's extra codes
    "PQ": ("var", 1), "Vdc": ("V", 0.001), "Idc": ("A", 0.001), "dT": ("°C", 0.001),
}


@pytest.mark.parametrize(("code", "unit", "quantum"), [(c, u, q) for c, (u, q) in SPEC.items()])
def test_every_spec_code_has_its_unit_and_quantum(code: str, unit: str, quantum: float) -> None:
    tc = type_code(code)
    assert tc.known
    assert tc.code == code
    assert tc.unit == unit
    assert tc.quantum == quantum


@pytest.mark.parametrize(("code", "unit"), [("P", "kWh"), ("S", "kVAh"), ("var", "kvarh"),
                                            ("PQ", "kvarh")])
def test_power_codes_report_energy_in_kilo_units_per_hour(code: str, unit: str) -> None:
    tc = type_code(code)
    assert tc.cumulative_unit == unit
    # 1 kWh = 3.6 MJ = 3 600 000 W·s raw counts at quantum 1
    assert tc.cumulative(3_600_000) == pytest.approx(1.0)
    assert tc.cumulative(-7_200_000) == pytest.approx(-2.0)


def test_reactive_power_reads_the_same_as_var_or_pq() -> None:
    var, pq = type_code("var"), type_code("PQ")
    assert (var.unit, var.cumulative_unit, var.cumulative(123_456)) == (
        pq.unit, pq.cumulative_unit, pq.cumulative(123_456))


def test_accumulated_codes_report_unit_seconds() -> None:
    volts = type_code("V")
    assert volts.cumulative_unit == "V·s"
    assert volts.cumulative(120_500) == pytest.approx(120.5)  # 120 500 mV·s
    amps = type_code("I")
    assert amps.cumulative(-2_000) == pytest.approx(-2.0)


def test_discrete_and_whole_numbers_are_not_scaled() -> None:
    assert type_code("d").cumulative(42) == 42
    assert type_code("#").cumulative(-5) == -5


def test_unknown_codes_are_opaque_numbers() -> None:
    tc = type_code("Zq")
    assert not tc.known
    assert (tc.code, tc.unit, tc.quantum, tc.cumulative_unit) == ("Zq", "", 1.0, "")
    assert tc.cumulative(9_007_199_254_740_993) == float(9_007_199_254_740_993)


@pytest.mark.parametrize(("code", "rate", "cumulative"), [
    ("P", 0, 3), ("S", 0, 3), ("PQ", 0, 3), ("var", 0, 3), ("V", 3, 3), ("I", 3, 3),
    ("F", 3, 3), ("T", 3, 3), ("#", 0, 0), ("#3", 3, 3), ("$", 9, 9), ("Qv", 9, 9),
    ("Pa", 0, 0), ("d", 0, 0),
])
def test_values_are_rounded_to_their_quantum_and_energy_to_the_wh(
        code: str, rate: int, cumulative: int) -> None:
    assert decimals(code) == rate
    assert decimals(code, cumulative=True) == cumulative
    assert rounded(code, 1234.123456789) == round(1234.123456789, rate)
    assert rounded(code, 1234.123456789, cumulative=True) == round(1234.123456789, cumulative)


def test_unknown_codes_and_odd_values_are_left_alone() -> None:
    assert decimals("Zz") is None
    assert rounded("Zz", 1.23456789) == 1.23456789
    assert math.isnan(rounded("P", math.nan))


# code: (decimals of a rate, decimals of a cumulative value): the decimals that tell one
# quantum from the next -- 1 W: none; 1 mV: 3; 2^-29 $/s: 9; 1 W·s in kWh (1/3 600 000): 7
DIGITS = {
    "#": (0, 0), "#3": (3, 3), "%": (3, 3), "$": (9, 9), "a": (3, 3), "aq": (3, 3),
    "d": (0, 0), "Ee": (0, 0), "F": (3, 3), "h": (3, 3), "I": (3, 3), "m": (3, 3),
    "P": (0, 7), "Pa": (0, 0), "ppm": (3, 3), "var": (0, 7), "Q": (0, 0), "Qe": (3, 3),
    "Qv": (9, 9), "R": (0, 0), "S": (0, 7), "T": (3, 3), "THD": (3, 3), "V": (3, 3),
    "v": (3, 3), "PQ": (0, 7), "Vdc": (3, 3), "Idc": (3, 3), "dT": (3, 3),
}


def test_every_code_has_its_digits() -> None:
    assert set(DIGITS) == set(SPEC)
    for code, (rate, cumulative) in DIGITS.items():
        tc = type_code(code)
        assert (tc.rate_digits, tc.cumulative_digits) == (rate, cumulative), code


@pytest.mark.parametrize("code", sorted(SPEC))
def test_published_numbers_are_rounded_to_the_quantum(code: str) -> None:
    rate_digits, cumulative_digits = DIGITS[code]
    for digits, cumulative in ((rate_digits, False), (cumulative_digits, True)):
        noisy = 10.148858990830107
        value = quantized(code, noisy, cumulative=cumulative)
        assert value == round(noisy, digits)
        if digits == 0:
            assert isinstance(value, int)
            assert json.dumps(value) == "10"
        else:  # the shortest text for that many decimals: no float noise
            text = json.dumps(value)
            assert len(text.split(".")[1]) <= digits, text
            assert float(text) == value
    # a whole number of quanta keeps its value, to the quantum
    tc = type_code(code)
    back = quantized(code, 1234 * tc.quantum)
    assert back is not None
    assert round(back / tc.quantum) == 1234


def test_rounding_leaves_what_it_cannot_judge() -> None:
    assert quantized("V", None) is None
    assert quantized("zz", 10.148858990830107) == 10.148858990830107  # unknown code
    nan = quantized("V", float("nan"))
    assert nan is not None
    assert math.isnan(nan)
    assert quantized("V", 120.12300000000001) == 120.123
    assert quantized("P", -0.4) == 0


def test_only_codes_whose_time_integral_means_something_are_integrable() -> None:
    integrable = {c for c in SPEC if type_code(c).integrable}
    assert integrable == {"P", "S", "var", "PQ", "$", "Ee", "Q", "Qv", "Idc", "v"}
