"""Register-name slugs: valid MQTT topic levels, stable, unique per meter; the topic table."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt import Topics, slug, unique_slugs

VALID = re.compile(r"^[a-z0-9_]+$")  # what the README promises: lower-case ASCII, digits, _


def valid_topic_level(level: str) -> bool:
    """MQTT 3.1.1 §4.7: a level may not hold '/', '+', '#' or NUL; '$' starts system topics."""
    return (
        bool(level)
        and not any(c in level for c in "/+#\x00")
        and not level.startswith("$")
        and len(level.encode("utf-8")) < 65536
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Temp Büro", "temp_buro"),
        ("Solar+", "solar_plus"),
        ("Panel A/B", "panel_a_b"),
        ("Amps #1", "amps_1"),
        ("Straße", "strasse"),
        ("$SYS", "sys"),
        ("use", "use"),
        ("  Grid  ", "grid"),
        ("L1-L2", "l1_l2"),
        ("Heat & Cool", "heat_and_cool"),
        ("THD %", "thd_pct"),
    ],
)
def test_awkward_names(name: str, expected: str) -> None:
    assert slug(name) == expected


def test_a_name_with_nothing_left_gets_a_hash_slug() -> None:
    digest = hashlib.sha1("日本".encode(), usedforsecurity=False).hexdigest()[:6]
    assert slug("日本") == f"reg_{digest}"
    assert slug("+++") == "plus_plus_plus"
    assert slug("///").startswith("reg_")


def test_long_names_are_cut_and_stay_distinct() -> None:
    a, b = "x" * 80 + "a", "x" * 80 + "b"
    assert len(slug(a)) <= 48
    assert slug(a) != slug(b)


def test_collisions_are_resolved_deterministically() -> None:
    names = ["Grid", "grid", "GRID", "Solar+", "Solar plus"]
    result = unique_slugs(names)
    assert len(set(result.values())) == len(names)
    assert result["grid"] == "grid"  # the exact match keeps the plain slug
    h = hashlib.sha1(b"Grid", usedforsecurity=False).hexdigest()[:6]
    assert result["Grid"] == f"grid_{h}"
    assert result == unique_slugs(list(reversed(names)))  # order of the input does not matter


def test_a_suffix_never_takes_another_names_plain_slug() -> None:
    h = hashlib.sha1(b"A", usedforsecurity=False).hexdigest()[:6]
    names = ["a", "A", f"a_{h}"]
    result = unique_slugs(names)
    assert len(set(result.values())) == 3
    assert result[f"a_{h}"] == f"a_{h}"


names_strategy = st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=25)


@given(names_strategy)
def test_slugs_are_valid_unique_and_stable(names: list[str]) -> None:
    result = unique_slugs(names)
    assert set(result) == set(names)
    slugs = list(result.values())
    assert len(set(slugs)) == len(slugs)
    for s in slugs:
        assert VALID.match(s), s
        assert valid_topic_level(s)
    assert unique_slugs(names) == result


@given(names_strategy, st.text(max_size=40))
def test_a_name_without_collision_keeps_its_own_slug(names: list[str], name: str) -> None:
    others = [n for n in names if slug(n) != slug(name)]
    assert unique_slugs([*others, name])[name] == slug(name)


def test_topic_table() -> None:
    t = Topics("egauge", "homeassistant")
    assert t.bridge_state == "egauge/bridge/state"
    assert t.bridge_info == "egauge/bridge/info"
    assert t.bridge_audit == "egauge/bridge/audit"
    assert t.availability("main") == "egauge/main/availability"
    assert t.state("main") == "egauge/main/state"
    assert t.device("main") == "egauge/main/device"
    assert t.history("main") == "egauge/main/history"
    assert t.register("main", "solar_plus") == "egauge/main/register/solar_plus"
    assert t.request("main", "config/get") == "egauge/main/request/config/get"
    assert t.response("main", "reboot") == "egauge/main/response/reboot"
    assert t.discovery_status == "homeassistant/status"
    expected = "homeassistant/sensor/egauge_G1/grid/config"
    assert t.discovery("sensor", "egauge_G1", "grid") == expected
