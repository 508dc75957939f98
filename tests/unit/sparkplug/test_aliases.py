"""Pinned Sparkplug aliases and register slugs: a metric keeps its alias across restarts and
register-set changes, a new metric gets a number never used before, aliases are unique across
the node and all its devices, and a metric name never moves to another register."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.sparkplug.aliases import AliasBook


def book(path: Path) -> AliasBook:
    aliases = AliasBook(path)
    aliases.load()
    return aliases


def test_aliases_are_unique_across_the_node_and_its_devices(tmp_path: Path) -> None:
    aliases = book(tmp_path / "aliases.json")
    given = [aliases.alias(None, "Properties/Software Version"),
             aliases.alias("main", "Registers/grid/Rate"),
             aliases.alias("garage", "Registers/grid/Rate"),
             aliases.alias("main", "Registers/grid/Cumulative")]
    assert len(set(given)) == 4
    assert min(given) >= 1
    assert aliases.alias("main", "Registers/grid/Rate") == given[1]  # asked again: the same


def test_aliases_survive_a_restart_and_removed_metrics_keep_theirs(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    first = book(path)
    grid = first.alias("main", "Registers/grid/Rate")
    solar = first.alias("main", "Registers/solar/Rate")
    first.save()
    again = book(path)
    # the register set changed: solar is gone, ev is new
    assert again.alias("main", "Registers/grid/Rate") == grid
    ev = again.alias("main", "Registers/ev/Rate")
    assert ev not in (grid, solar)  # never a reused number
    again.save()
    third = book(path)
    assert third.alias("main", "Registers/solar/Rate") == solar  # it came back: its own alias
    assert third.alias("main", "Registers/ev/Rate") == ev
    assert third.names("main") == {grid: "Registers/grid/Rate", solar: "Registers/solar/Rate",
                                   ev: "Registers/ev/Rate"}


def test_a_new_alias_is_above_every_alias_on_file_even_when_next_was_lost(
        tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    path.write_text(json.dumps({"version": 1, "next": 2, "node": {"a": 1},
                                "meters": {"main": {"aliases": {"b": 7}, "slugs": {}}}}))
    aliases = book(path)
    assert aliases.alias("main", "c") == 8


def test_saving_writes_only_when_something_new_was_pinned(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "aliases.json"
    aliases = book(path)
    aliases.save()
    assert not path.exists()
    aliases.alias(None, "x")
    aliases.save()
    stamp = path.stat().st_mtime_ns
    aliases.alias(None, "x")
    aliases.save()
    assert path.stat().st_mtime_ns == stamp


def test_a_slug_is_pinned_to_its_register(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    first = book(path)
    assert first.slug("main", "Solar+", "solar_plus") == "solar_plus"
    # another register whose name gives the same slug: the first keeps it
    other = first.slug("main", "Solar +", "solar_plus")
    assert other.startswith("solar_plus_")
    assert other != "solar_plus"
    assert first.slug("garage", "Solar +", "solar_plus") == "solar_plus"  # per meter
    first.save()
    again = book(path)
    # even when the slug function now proposes something else, the pinned slug stays
    assert again.slug("main", "Solar+", "solar_p") == "solar_plus"
    assert again.slug("main", "Solar +", "solar_plus") == other


@pytest.mark.parametrize("text", [
    "{broken",
    json.dumps({"version": 2, "next": 1, "node": {}, "meters": {}}),
    json.dumps({"version": 1, "next": 3, "node": {"a": 1}, "meters": {
        "main": {"aliases": {"b": 1}, "slugs": {}}}}),  # alias 1 twice
    json.dumps({"version": 1, "next": 3, "node": {}, "meters": {
        "main": {"aliases": {}, "slugs": {"A": "a", "B": "a"}}}}),  # one slug, two registers
    json.dumps({"version": 1, "next": 3, "node": {"a": "x"}, "meters": {}}),
])
def test_a_damaged_alias_file_is_refused_at_start(tmp_path: Path, text: str) -> None:
    path = tmp_path / "aliases.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        AliasBook(path).load()
    problem, = info.value.problems
    assert problem.startswith(f"{path}: not a valid Sparkplug alias file")
    assert path.read_text() == text  # left as it was


def test_numbers_handed_out_before_a_crash_are_never_given_again(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    running = book(path)
    lost = {running.alias("main", f"Registers/r{i}/Rate") for i in range(3)}  # never saved
    after_crash = book(path)
    fresh = {after_crash.alias("main", f"Registers/r{i}/Rate") for i in range(3)}
    fresh.add(after_crash.alias("main", "Registers/new/Rate"))
    assert min(fresh) > max(lost)  # above the block reserved before the crash


def test_a_clean_stop_releases_the_reserved_numbers(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    running = book(path)
    given = [running.alias("main", f"Registers/r{i}/Rate") for i in range(3)]
    running.save(final=True)
    again = book(path)
    assert [again.alias("main", f"Registers/r{i}/Rate") for i in range(3)] == given
    assert again.alias("main", "Registers/new/Rate") == max(given) + 1  # no gap
