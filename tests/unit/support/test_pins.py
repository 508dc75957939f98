"""The pin file format shared by the Modbus slots and the MQTT slugs, and the pin lock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import StateFileError
from gateway.support import PinFile, PinLock, PinStore


def test_a_file_round_trips_one_register_per_line(tmp_path: Path) -> None:
    store = PinStore(tmp_path, "slugs")
    pins = PinFile("main", "slugs", {"Grid": {"slug": "grid", "idx": 3, "did": None},
                                     "Temp Büro": {"slug": "temp_buro", "present": False}},
                   {"serial": "G1"})
    store.save(pins)
    text = store.path("main").read_text(encoding="utf-8")
    assert store.path("main") == tmp_path / "slugs" / "main.json"
    assert text.splitlines()[1:3] == [
        '  "Grid": {"slug": "grid", "idx": 3, "did": null},',
        '  "Temp Büro": {"slug": "temp_buro", "present": false}']
    data = json.loads(text)
    assert (data["version"], data["kind"], data["meter"], data["meta"]) == (
        2, "slugs", "main", {"serial": "G1"})
    loaded = store.load("main")
    assert (loaded.entries, loaded.meta) == (pins.entries, pins.meta)
    assert list(loaded.entries) == ["Grid", "Temp Büro"]  # the order they were pinned in
    assert sorted(p.name for p in store.directory.iterdir()) == ["main.json"]  # no leftovers


def test_no_file_is_no_pins_and_meters_lists_the_files(tmp_path: Path) -> None:
    store = PinStore(tmp_path, "modbus")
    assert store.load("main").entries == {}
    assert store.meters() == []
    store.save(PinFile("b", "modbus", {"x": {"slot": 0}}))
    store.save(PinFile("a", "modbus"))
    assert store.meters() == ["a", "b"]


def test_version_1_files_are_read_as_they_are(tmp_path: Path) -> None:
    store = PinStore(tmp_path, "modbus")
    store.directory.mkdir()
    store.path("main").write_text('{"version": 1, "meter": "main", "slots": {\n'
                                  '  "Grid": {"slot": 1, "type": "P"}\n}}\n')
    assert store.load("main").entries == {"Grid": {"slot": 1, "type": "P"}}


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "not a valid pin file (not JSON"),
    ("[]", "not a valid pin file (not a JSON object)"),
    ('{"version": 7, "pins": {}}', "not a valid pin file (unknown version 7)"),
    ('{"version": 2, "pins": []}', "not a valid pin file ('pins' must be an object)"),
    ('{"version": 2, "pins": {"a": [1]}}', "not a valid pin file (entry 'a' must be"),
    ('{"version": 2, "pins": {"a": {"x": {"y": 1}}}}', "not a valid pin file (entry 'a'"),
])
def test_a_damaged_file_names_itself_and_its_problem(tmp_path: Path, content: str,
                                                     problem: str) -> None:
    store = PinStore(tmp_path, "slugs")
    store.directory.mkdir()
    store.path("main").write_text(content)
    with pytest.raises(StateFileError) as caught:
        store.load("main")
    assert caught.value.path == str(store.path("main"))
    assert str(caught.value).startswith(f"{store.path('main')}: {problem}")


TAKE = ("import sys; from gateway.support import PinLock; "
        "sys.exit(0 if PinLock(sys.argv[1], sys.argv[2]).take() else 1)")


def take_elsewhere(state_dir: Path, meter: str) -> bool:
    """Whether another process could take the lock exclusively."""
    done = subprocess.run([sys.executable, "-c", TAKE, str(state_dir), meter], timeout=60,
                          check=False, capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


def test_a_shared_lock_refuses_release_until_it_is_let_go(tmp_path: Path) -> None:
    gateway = PinLock(tmp_path, "main")
    assert gateway.share()
    assert gateway.path == tmp_path / "locks" / "main.lock"
    assert not take_elsewhere(tmp_path, "main")
    assert take_elsewhere(tmp_path, "other")  # per meter
    second = PinLock(tmp_path, "main")
    assert second.share()  # two gateways (or one after a reload) may share it
    gateway.release()
    second.release()
    assert take_elsewhere(tmp_path, "main")


def test_an_exclusive_holder_keeps_a_gateway_from_sharing(tmp_path: Path) -> None:
    release = PinLock(tmp_path, "main")
    assert release.take()
    gateway = PinLock(tmp_path, "main")
    assert not gateway.share()
    assert not gateway.held
    release.release()
    assert gateway.share()
    gateway.release()
