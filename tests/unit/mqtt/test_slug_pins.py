"""Pinned slugs (README "Slugs"): a name's slug never moves and is never given to another name.

The expected suffixes are computed here from the documented rule -- ``_`` + the first 6 hex
digits of the SHA-1 of the name -- not by the code under test."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import StateFileError
from gateway.model import Identity, RegisterInfo
from gateway.mqtt import MeterSlugs
from gateway.support import PinFile

SLUG = re.compile(r"^[a-z0-9_]+$")


def sha(name: str, digits: int = 6) -> str:
    return hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).hexdigest()[:digits]


def regs(*names: str, code: str = "P") -> tuple[RegisterInfo, ...]:
    return tuple(RegisterInfo(n, code, i, i) for i, n in enumerate(names))


def test_first_sight_pins_what_earlier_releases_computed() -> None:
    """No pins yet: the slugs of the old rule (closest name keeps the slug, the others get
    the hash suffix), so an upgrade moves nothing."""
    pins = MeterSlugs("main")
    done = pins.assign(regs("Panel A/B", "Panel A-B", "grid", "Grid", "Solar+"))
    assert done.slugs == {
        "Panel A-B": "panel_a_b",  # neither matches exactly: the one that sorts first
        "Panel A/B": f"panel_a_b_{sha('Panel A/B')}",
        "grid": "grid",  # the exact match
        "Grid": f"grid_{sha('Grid')}",
        "Solar+": "solar_plus",
    }
    assert done.changed
    assert set(done.added) == set(done.slugs)


def test_a_new_name_never_takes_a_pinned_slug() -> None:
    """The issue: with "Panel A/B" pinned, "Panel A-B" (which sorts first) must not take
    panel_a_b."""
    pins = MeterSlugs("main")
    pins.assign(regs("Grid", "Panel A/B"))
    done = pins.assign(regs("Grid", "Panel A-B", "Panel A/B"))
    assert done.slugs["Panel A/B"] == "panel_a_b"
    assert done.slugs["Panel A-B"] == f"panel_a_b_{sha('Panel A-B')}"
    assert done.added == ("Panel A-B",)
    assert pins.get("Panel A/B").slug == "panel_a_b"  # type: ignore[union-attr]


@pytest.mark.parametrize("order", [("Panel A/B", "Panel A-B"), ("Panel A-B", "Panel A/B")])
def test_names_that_arrive_together_get_the_same_slugs_in_either_order(
        order: tuple[str, str]) -> None:
    pins = MeterSlugs("main")
    pins.assign(regs("Grid"))
    done = pins.assign(regs("Grid", *order))
    assert done.slugs == {"Grid": "grid", "Panel A-B": "panel_a_b",
                          "Panel A/B": f"panel_a_b_{sha('Panel A/B')}"}


@pytest.mark.parametrize(("first", "second"), [("Panel A/B", "Panel A-B"),
                                               ("Panel A-B", "Panel A/B")])
def test_names_that_arrive_one_after_the_other_keep_what_the_pins_say(
        first: str, second: str) -> None:
    pins = MeterSlugs("main")
    pins.assign(regs(first))
    pins.assign(regs(first, second))
    expected = {first: "panel_a_b", second: f"panel_a_b_{sha(second)}"}
    for listed in ((first, second), (second, first), (second,), (first,)):
        assert pins.assign(regs(*listed)).slugs == {n: expected[n] for n in listed}
    copy = MeterSlugs.from_file(pins.to_file(), "<test>")  # a restart
    assert copy.assign(regs(second, first)).slugs == expected


def test_a_removed_name_keeps_its_slug_and_nobody_else_gets_it() -> None:
    pins = MeterSlugs("main")
    pins.assign(regs("Panel A/B", "Grid"))
    pins.assign(regs("Grid"))  # Panel A/B removed
    assert not pins.get("Panel A/B").present  # type: ignore[union-attr]
    done = pins.assign(regs("Grid", "Panel A-B"))  # a look-alike arrives meanwhile
    assert done.slugs["Panel A-B"] == f"panel_a_b_{sha('Panel A-B')}"
    back = pins.assign(regs("Grid", "Panel A-B", "Panel A/B"))
    assert back.slugs["Panel A/B"] == "panel_a_b"
    assert back.added == ()


def test_a_suffix_already_pinned_grows_longer() -> None:
    taken = f"panel_a_b_{sha('Panel A-B')}"
    pins = MeterSlugs("main")
    pins.assign(regs("Panel A/B", taken))  # a register literally named like the suffix
    done = pins.assign(regs("Panel A/B", taken, "Panel A-B"))
    assert done.slugs["Panel A-B"] == f"panel_a_b_{sha('Panel A-B', 8)}"


def test_energy_entity_ids_are_kept_apart() -> None:
    """sensor.<meter>_<slug>_energy is the energy sensor of <slug>: a new name whose slug is
    another's plus _energy (or the other way round) gets a suffix."""
    pins = MeterSlugs("main")
    pins.assign(regs("Grid", "Solar energy"))
    done = pins.assign(regs("Grid", "Solar energy", "Grid energy", "Solar"))
    assert done.slugs["Grid energy"] == f"grid_energy_{sha('Grid energy')}"
    assert done.slugs["Solar"] == f"solar_{sha('Solar')}"


def test_a_rename_on_the_meter_is_reported_once() -> None:
    pins = MeterSlugs("main")
    pins.assign(regs("Grid", "Panel A/B"))
    done = pins.assign(regs("Grid", "Panel AB"), at=5.0)  # same idx and did, new name
    [change] = done.changes
    assert (change.meter, change.old_name, change.new_name, change.at) == (
        "main", "Panel A/B", "Panel AB", 5.0)
    assert change.renamed
    assert not change.retyped
    assert done.slugs["Panel AB"] == "panel_ab"
    assert pins.get("Panel A/B").slug == "panel_a_b"  # type: ignore[union-attr]  # kept
    assert pins.assign(regs("Grid", "Panel AB")).changes == ()  # reported once
    restarted = MeterSlugs.from_file(pins.to_file(), "<test>")
    assert restarted.assign(regs("Grid", "Panel AB")).changes == ()
    [back] = restarted.assign(regs("Grid", "Panel A/B")).changes  # renamed back
    assert (back.old_name, back.new_name) == ("Panel AB", "Panel A/B")


def test_a_retype_is_reported_once_and_a_remove_plus_add_is_no_rename() -> None:
    pins = MeterSlugs("main")
    pins.assign(regs("Grid", "Volts"))
    done = pins.assign((RegisterInfo("Grid", "P", 0, 0), RegisterInfo("Volts", "I", 1, 1)))
    [change] = done.changes
    assert (change.old_name, change.new_name, change.old_type, change.new_type) == (
        "Volts", "Volts", "P", "I")
    assert change.retyped
    assert not change.renamed
    assert pins.assign((RegisterInfo("Grid", "P", 0, 0),
                        RegisterInfo("Volts", "I", 1, 1))).changes == ()
    # a register removed and another added at a new idx and did is no rename
    moved = pins.assign((RegisterInfo("Grid", "P", 0, 0), RegisterInfo("Amps", "I", 2, 2)))
    assert moved.changes == ()


def test_the_meters_identity_is_remembered() -> None:
    pins = MeterSlugs("main")
    ident = Identity("G1", "EG4030", "4.6", "meter-1")
    assert pins.note_identity(ident)
    assert not pins.note_identity(ident)
    assert MeterSlugs.from_file(pins.to_file(), "<test>").identity == {
        "serial": "G1", "model": "EG4030", "firmware": "4.6", "hostname": "meter-1"}


@pytest.mark.parametrize(("entries", "problem"), [
    ({"a": {"slug": "A b"}}, "slug must be lower-case"),
    ({"a": {"slug": "x"}, "b": {"slug": "x"}}, "a slug is pinned to two names"),
    ({"a": {"slug": "x", "present": "yes"}}, "present true or false"),
])
def test_a_damaged_slug_file_is_refused(entries: dict[str, dict[str, object]],
                                        problem: str) -> None:
    pins = PinFile("main", "slugs", entries)  # type: ignore[arg-type]
    with pytest.raises(StateFileError) as caught:
        MeterSlugs.from_file(pins, "/state/slugs/main.json")
    assert problem in str(caught.value)


names = st.sampled_from(["Panel A/B", "Panel A-B", "panel a b", "Grid", "grid", "GRID",
                         "Solar+", "Solar plus", "Solar", "Solar energy", "日本", "x" * 60])


@given(st.lists(st.lists(names, max_size=8, unique=True), min_size=1, max_size=8))
def test_whatever_comes_and_goes_a_pinned_slug_never_moves(sets: list[list[str]]) -> None:
    pins = MeterSlugs("main")
    seen: dict[str, str] = {}
    for names_now in sets:
        slugs = pins.assign(regs(*names_now)).slugs
        assert set(slugs) == set(names_now)
        for name, value in slugs.items():
            assert seen.setdefault(name, value) == value  # never moves
            assert SLUG.match(value)
        everything = [p.slug for _, p in pins.items()]
        assert len(set(everything)) == len(everything)  # never shared


def test_entities_of_their_own_get_their_wanted_slug_or_go_around_a_taken_one() -> None:
    """Counters and diagnostics pin the slugs of their entity ids: never one a register has
    (nor one the ``_energy`` rule reserves), and a register new to the meter never takes
    theirs."""
    pins = MeterSlugs("main")
    pins.assign(regs("Grid", "Grid import", "Data age", "Solar energy"))
    assert pins.entity("export:Grid", "grid_export") == ("grid_export", True)
    assert pins.entity("import:Grid", "grid_import") == (f"grid_import_{sha('import:Grid')}",
                                                         True)
    assert pins.entity("diagnostic:data_age", "data_age")[0] == \
        f"data_age_{sha('diagnostic:data_age')}"
    # "solar" is free, but a sensor's energy entity would be sensor.main_solar_energy
    assert pins.entity("import:Solar", "solar")[0] == f"solar_{sha('import:Solar')}"
    assert pins.entity("export:Grid", "anything") == ("grid_export", False)  # pinned
    # a new register whose slug an entity holds goes around it, as around a register
    done = pins.assign(regs("Grid", "Grid import", "Data age", "Solar energy", "Grid export"))
    assert done.slugs["Grid export"] == f"grid_export_{sha('Grid export')}"


def test_entity_pins_are_kept_in_the_file_and_checked() -> None:
    pins = MeterSlugs("main")
    pins.assign(regs("Grid"))
    pins.entity("import:Grid", "grid_import")
    text = pins.to_file()
    assert text.meta["entity:import:Grid"] == "grid_import"
    again = MeterSlugs.from_file(text, "slugs/main.json")
    assert again.entities == {"import:Grid": "grid_import"}
    assert again.entity("import:Grid", "other") == ("grid_import", False)
    text.meta["entity:export:Grid"] = "grid"  # a register's slug
    with pytest.raises(StateFileError, match="pinned to two names"):
        MeterSlugs.from_file(text, "slugs/main.json")
    text.meta["entity:export:Grid"] = "Grid Export"
    with pytest.raises(StateFileError, match="lower-case letters"):
        MeterSlugs.from_file(text, "slugs/main.json")
