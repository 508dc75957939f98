"""``egauge-gateway pins list|release`` as a user runs them (subprocesses) against the pins a
real gateway wrote, with the simulator as the meter."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker, free_port
from tests.support.lifecycle import ROOT
from tests.support.mqtt import running_app
from tests.support.simulator import SIM_PASSWORD
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

CONFIG = """\
gateway: {{id: pintest, state_dir: "{state}"}}
meters:
  - {{id: main, url: "{url}", username: owner, password: "${{METER_PW}}",
     poll_interval_s: 0.5, modbus_unit_id: 1}}
mqtt: {{host: 127.0.0.1, port: {mqtt_port}, base_topic: {prefix},
        homeassistant: {{prefix: {prefix}-ha}}}}
modbus: {{host: 127.0.0.1, port: {modbus_port}}}
http: {{enabled: false}}
"""
ENV = {"METER_PW": SIM_PASSWORD}


def sha6(name: str) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:6]


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0721", password=SIM_PASSWORD)
    with ThreadedSimServer([meter]) as server:
        yield meter, server.url_for(meter)


@pytest.fixture
def config(tmp_path: Path, broker: Broker, topic_prefix: str, sim: tuple[SimMeter, str]
           ) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", url=sim[1], mqtt_port=broker.port,
                                  prefix=topic_prefix, modbus_port=free_port()))
    return path


def pins(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "pins", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)})


def pinned(path: Path) -> set[str]:
    """The names with a pin in one pin file (slug files: with a slug)."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return set()
    return set(entries.get("pins", entries.get("slots", {})))


async def run_once(config: Path, meter: SimMeter) -> None:
    """Run the gateway until it pinned every register the meter has now."""
    state = Path(load_config(config, env=ENV).gateway.state_dir)
    names = {r.name for r in meter.registers}
    async with running_app(load_config(config, env=ENV)):
        await async_wait_until(lambda: names <= pinned(state / "slugs" / "main.json")
                               and names <= pinned(state / "modbus" / "main.json"),
                               what="the pins written")


def listed(config: Path) -> dict[str, dict[str, Any]]:
    done = pins("list", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    [meter] = json.loads(done.stdout)["meters"]
    assert meter["meter"] == "main"
    return {row["name"]: row for row in meter["pins"]}


async def test_list_shows_every_pin_and_release_frees_it_on_purpose_only(
        config: Path, sim: tuple[SimMeter, str]) -> None:
    meter, _ = sim
    await run_once(config, meter)
    rows = listed(config)
    names = [r.name for r in sorted(meter.registers, key=lambda r: r.idx)]
    # after the registers, the slots of the energy counters of those that run both ways
    counters = [f"{n} {role}" for n in ("use", "gen", "Grid", "Panel A/B", "Reactive")
                for role in ("import", "export")]
    assert list(rows) == names + counters
    for k, name in enumerate(names + counters):  # the default map: the k-th name at 100 + 6k
        assert (rows[name]["modbus_slot"], rows[name]["modbus_address"]) == (k, 100 + 6 * k)
    for name in names:
        assert rows[name]["present"] is True
    assert rows["Grid import"]["slug"] is None  # a slot, no topic of its own
    assert rows["Panel A/B"]["slug"] == "panel_a_b"
    text = pins("list", "-c", str(config))
    assert text.returncode == 0
    assert "meter main, serial SIM0721: 21 names pinned" in text.stdout
    assert "import:Grid -> grid_import" in text.stdout  # the slugs of its entities

    still_there = pins("release", "-c", str(config), "--meter", "main", "Panel A/B")
    assert still_there.returncode == 1
    assert "'Panel A/B' still on meter 'main'" in still_there.stderr
    unknown = pins("release", "-c", str(config), "--meter", "main", "Nope")
    assert unknown.returncode == 1
    assert "no modbus/slug pin for 'Nope'" in unknown.stderr
    assert listed(config) == rows  # nothing was released

    # the look-alike arrives; then both are released on purpose: the next start hands the
    # slugs out afresh, as if neither had been seen ("Panel A-B" sorts first)
    meter.add_register("Panel A-B", "P", meter.register("Panel A/B").wave)  # type: ignore[arg-type]
    await run_once(config, meter)
    assert listed(config)["Panel A-B"]["slug"] == f"panel_a_b_{sha6('Panel A-B')}"
    forced = pins("release", "-c", str(config), "--meter", "main", "--only", "slug",
                  "--force", "Panel A/B", "Panel A-B")
    assert forced.returncode == 0, forced.stderr
    assert "released 'Panel A/B' of meter 'main': slug panel_a_b" in forced.stdout
    after = listed(config)
    assert "Panel A/B" in after  # its Modbus slot stays (--only slug)
    assert after["Panel A/B"]["slug"] is None
    assert after["Panel A/B"]["modbus_address"] == rows["Panel A/B"]["modbus_address"]
    await run_once(config, meter)
    again = listed(config)
    assert (again["Panel A-B"]["slug"], again["Panel A/B"]["slug"]) == (
        "panel_a_b", f"panel_a_b_{sha6('Panel A/B')}")

    # a name no longer on the meter may go without --force, both kinds by default
    meter.remove_registers(["Temp Büro"])
    gone = pins("release", "-c", str(config), "--meter", "main", "Temp Büro")
    assert gone.returncode == 0, gone.stderr
    assert "Temp Büro" not in listed(config)


async def test_release_is_refused_while_a_gateway_serves_the_meter(
        config: Path, sim: tuple[SimMeter, str]) -> None:
    meter, _ = sim
    await run_once(config, meter)
    async with running_app(load_config(config, env=ENV)):
        busy = pins("release", "-c", str(config), "--meter", "main", "--force", "Grid")
        assert busy.returncode == 1
        assert "a running gateway serves meter 'main'" in busy.stderr
    assert "Grid" in listed(config)
    meter.go_down(60.0)
    unreachable = pins("release", "-c", str(config), "--meter", "main", "Grid")
    assert unreachable.returncode == 3
    assert "cannot tell whether the names are on meter 'main'" in unreachable.stderr
    assert "Grid" in listed(config)
