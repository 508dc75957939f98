"""``egauge-gateway map export|generate`` as a user runs them (subprocesses, real simulator)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import ModbusConfig, load_config
from gateway.modbus import ModbusOutput, load_mapping
from gateway.modbus.pins import PinStore
from gateway.model import RegisterInfo
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME

CONFIG = """\
gateway: {{id: t, state_dir: {state}}}
meters:
  - id: main
    url: {url}
    username: {user}
    password: ${{TEST_METER_PASSWORD}}
    modbus_unit_id: 1
  - id: sun
    url: {url}
    username: {user}
    password: ${{TEST_METER_PASSWORD}}
    modbus_unit_id: 2
    modbus_mapping: sunspec
mqtt: {{enabled: false}}
modbus: {{enabled: true, port: 5020}}
http: {{enabled: false}}
"""


def write_config(tmp_path: Path, url: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state", url=url, user=SIM_USERNAME))
    path.chmod(0o600)
    return path


def run_map(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TEST_METER_PASSWORD": SIM_PASSWORD}
    return subprocess.run([sys.executable, "-m", "gateway", "map", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def pin(config_path: Path, names: list[tuple[str, str]]) -> None:
    """Let a running output see these registers (as the poller would) and persist them."""
    config = load_config(config_path, env={"TEST_METER_PASSWORD": SIM_PASSWORD})
    out = ModbusOutput(ModbusConfig(host="127.0.0.1", port=0), config.meters,
                       config.gateway.state_dir)
    await out.start()
    out.on_registers("main", tuple(RegisterInfo(n, c, i) for i, (n, c) in enumerate(names)))
    await out.close()


async def test_export_prints_the_live_map(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    await pin(config, [("Grid", "P"), ("Temp Büro", "T"), ("Amps #1", "I")])
    done = run_map("export", "-c", str(config), "--meter", "main")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == ["Address", "Name", "Description", "Type", "Scale", "Unit",
                             "Word Order", "Registers", "Source", "Register"]
    table = {(r["Address"], r["Name"], r["Type"], r["Unit"], r["Source"]) for r in rows}
    assert ("0", "online", "uint16", "", "status:online") in table
    assert ("2", "timestamp", "uint32", "s", "status:timestamp") in table
    # slot k: 100 + 6k rate (float32), 102 + 6k cumulative (float64)
    assert ("100", "Grid", "float32", "W", "rate") in table
    assert ("102", "Grid", "float64", "kWh", "cumulative") in table
    assert ("106", "Temp Büro", "float32", "°C", "rate") in table
    assert ("114", "Amps #1", "float64", "A·s", "cumulative") in table
    # Grid runs both ways: its import and export counters follow, a slot each
    assert ("118", "Grid import", "float32", "W", "import_rate") in table
    assert ("120", "Grid import", "float64", "kWh", "import") in table
    assert ("124", "Grid export", "float32", "W", "export_rate") in table
    assert ("126", "Grid export", "float64", "kWh", "export") in table
    assert len(rows) == 5 + 2 * 5


def test_export_sunspec_and_output_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    target = tmp_path / "sun.csv"
    done = run_map("export", "-c", str(config), "--meter", "sun", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    rows = {r["Address"]: r for r in csv.DictReader(target.open(encoding="utf-8"))}
    assert (rows["40000"]["Name"], rows["40000"]["Type"]) == ("SunS", "uint32")
    assert (rows["40098"]["Name"], rows["40098"]["Register"], rows["40098"]["Unit"]) == (
        "W", "Grid", "W")
    assert rows["40196"]["Name"] == "ID"


@pytest.mark.parametrize(("args", "message"), [
    (["--meter", "nope"], "--meter: no meter 'nope' (meters: main, sun)"),
])
def test_export_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_map("export", "-c", str(write_config(tmp_path)), *args)
    assert (done.returncode, done.stderr.strip()) == (78, message)


def test_export_with_a_broken_mapping_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("registers:\n - {address: 0, name: a, source: rate, type: flaot32}\n")
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("modbus_mapping: sunspec",
                                                 f"modbus_mapping: {bad}"))
    done = run_map("export", "-c", str(config), "--meter", "sun")
    assert done.returncode == 78
    assert done.stderr.strip() == (
        "registers[0].type: unknown type 'flaot32' (did you mean 'float32'?)")


async def test_generate_drafts_the_same_addresses(
        tmp_path: Path, threaded_simulator: Callable[..., ThreadedSimServer]) -> None:
    sim = SimMeter(username=SIM_USERNAME, password=SIM_PASSWORD)
    server = threaded_simulator([sim])
    config = write_config(tmp_path, server.url_for(sim))
    await pin(config, [("Solar+", "P")])  # already pinned names keep their slot
    target = tmp_path / "main-map.yaml"
    done = run_map("generate", "-c", str(config), "--meter", "main", "-o", str(target))
    assert done.returncode == 0, done.stderr
    drafted = load_mapping(str(target))  # a valid mapping file
    assert drafted.auto is None
    got = {(p.register, p.source): p.address for p in drafted.points if p.register}
    names = ["Solar+"] + [r.name for r in sorted(sim.registers, key=lambda r: r.idx)
                          if r.name != "Solar+"]
    # the registers' slots, then a slot for each energy counter (docs/ENERGY.md)
    counters = [(n, role) for n in ("use", "gen", "Grid", "Panel A/B", "Reactive")
                for role in ("import", "export")]
    assert got == {(n, s): 100 + 6 * k + (2 if s == "cumulative" else 0)
                   for k, n in enumerate(names) for s in ("rate", "cumulative")} | {
        (n, source): 100 + 6 * (len(names) + k) + (2 if source == role else 0)
        for k, (n, role) in enumerate(counters) for source in (f"{role}_rate", role)}
    # and a running output with the default map pins the same addresses
    out = ModbusOutput(ModbusConfig(), load_config(config, env={
        "TEST_METER_PASSWORD": SIM_PASSWORD}).meters, tmp_path / "state")
    out.on_registers("main", tuple(RegisterInfo(r.name, r.type_code, r.idx, r.did)
                                   for r in sim.registers))
    assert {(p.register, p.source): p.address for p in out.layout("main").points
            if p.register} == got
    assert PinStore(tmp_path / "state").load("main").get("Grid") is None  # generate wrote none


def test_generate_unreachable_meter(tmp_path: Path) -> None:
    done = run_map("generate", "-c", str(write_config(tmp_path, "http://127.0.0.1:9")),
                   "--meter", "main")
    assert done.returncode == 3
    assert done.stderr.startswith("map generate: meter main: ")
