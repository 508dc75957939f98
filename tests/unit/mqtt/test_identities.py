"""RegisterIdentities: slug pins kept per meter in state_dir, drift reported once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.errors import StateFileError
from gateway.model import RegisterInfo
from gateway.mqtt import RegisterIdentities
from gateway.support import PinLock
from tests.support.waiting import async_wait_until


def regs(*named: tuple[str, str, int, int | None]) -> tuple[RegisterInfo, ...]:
    return tuple(RegisterInfo(n, c, i, d) for n, c, i, d in named)


def free(state_dir: Path, meter: str) -> bool:
    """Whether ``pins release`` could take the meter's lock now."""
    lock = PinLock(state_dir, meter)
    taken = lock.take()
    lock.release()
    return taken


BEFORE = regs(("Grid", "P", 3, 0), ("Panel A/B", "P", 6, 2), ("Volts", "V", 7, 3))
AFTER = regs(("Grid", "P", 3, 0), ("Panel AB", "P", 6, 2), ("Volts", "I", 7, 3))


def test_a_rename_and_a_retype_are_logged_once_counted_and_kept(tmp_path: Path) -> None:
    ids = RegisterIdentities(tmp_path, ["main"], wall=lambda: 1234.5)
    ids.on_registers("main", BEFORE)
    with capture_logs() as logs:
        ids.on_registers("main", AFTER)
        ids.on_registers("main", AFTER)  # the same set again: nothing new
    changed = [e for e in logs if e["event"] == "register_changed"]
    assert [(e["meter"], e["old_name"], e["new_name"], e["old_type"], e["new_type"],
             e["log_level"]) for e in changed] == [
        ("main", "Panel A/B", "Panel AB", "P", "P", "warning"),
        ("main", "Volts", "Volts", "V", "I", "warning")]
    assert ids.change_counts == {"main": 2}
    assert [(c.old_name, c.new_name, c.at) for c in ids.recent_changes("main")] == [
        ("Panel A/B", "Panel AB", 1234.5), ("Volts", "Volts", 1234.5)]
    ids.flush()
    restarted = RegisterIdentities(tmp_path, ["main"])
    with capture_logs() as logs:
        assert restarted.slugs("main", AFTER) == {"Grid": "grid", "Panel AB": "panel_ab",
                                                  "Volts": "volts"}
    assert [e for e in logs if e["event"] == "register_changed"] == []


async def test_changed_pins_are_written_by_the_service(tmp_path: Path) -> None:
    ids = RegisterIdentities(tmp_path, ["main"])
    await ids.start()
    task = asyncio.create_task(ids.serve(), name="identities")
    try:
        ids.on_registers("main", BEFORE)
        path = tmp_path / "slugs" / "main.json"
        await async_wait_until(path.exists, what="the slug pins written")
        data = json.loads(path.read_text(encoding="utf-8"))
        assert {n: e["slug"] for n, e in data["pins"].items()} == {
            "Grid": "grid", "Panel A/B": "panel_a_b", "Volts": "volts"}
        assert not free(tmp_path, "main")  # held while serving
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await ids.close()
    assert free(tmp_path, "main")


def test_what_a_write_pins_is_logged_once_per_meter(tmp_path: Path) -> None:
    ids = RegisterIdentities(tmp_path, ["main"])
    with capture_logs() as logs:
        ids.on_registers("main", BEFORE)
        ids.entity_slug("main", "import:Grid", "grid_import")
        ids.entity_slug("main", "export:Grid", "grid_export")
        ids.entity_slug("main", "import:Grid", "grid_import")  # pinned already
        ids.flush()
        ids.flush()  # nothing new
    pinned = [e for e in logs if e["event"] == "slugs_pinned"]
    assert [(e["meter"], e["slugs"]) for e in pinned] == [("main", {
        "Grid": "grid", "Panel A/B": "panel_a_b", "Volts": "volts",
        "import:Grid": "grid_import", "export:Grid": "grid_export"})]


def test_a_damaged_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "slugs").mkdir()
    (tmp_path / "slugs" / "main.json").write_text('{"version": 2, "pins": {"a": {"slug": 1}}}')
    with pytest.raises(StateFileError) as caught:
        RegisterIdentities(tmp_path, ["main"])
    assert caught.value.path == str(tmp_path / "slugs" / "main.json")


async def test_a_reload_loads_new_meters_and_lets_removed_ones_go(tmp_path: Path) -> None:
    ids = RegisterIdentities(tmp_path, ["main"])
    await ids.start()
    ids.on_registers("main", BEFORE)  # pending, not written yet
    ids.prepare_meters(["garage"])()
    assert json.loads((tmp_path / "slugs" / "main.json").read_text())["pins"]["Grid"][
        "slug"] == "grid"  # written when it went
    assert free(tmp_path, "main")
    assert not free(tmp_path, "garage")
    await ids.close()
