"""Writable points of a mapping file (``coils``, ``command``): the shipped ones, inheritance
through ``extends``, every problem of a bad entry as an exact line, and ``map generate``'s
rendering of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_yaml
from gateway.errors import MappingError
from gateway.modbus import load_mapping
from gateway.modbus.cli import render_writes
from gateway.modbus.layout import Layout, usable_slots
from gateway.modbus.mapfile import parse_mapping
from gateway.modbus.mapping import Coil, CommandCode, RegisterMap


def load_text(tmp_path: Path, text: str) -> RegisterMap:
    path = tmp_path / "map.yaml"
    path.write_text(text, encoding="utf-8")
    return load_mapping(str(path))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(MappingError) as info:
        load_text(tmp_path, text)
    return list(info.value.problems)


def test_default_map_switches_relays_1_to_3_on_coils_0_to_2_and_reboots_with_code_1() -> None:
    rmap = load_mapping("default")
    assert [(c.address, c.relay, c.device) for c in rmap.coils] == [(0, 1, None), (1, 2, None),
                                                                    (2, 3, None)]
    assert rmap.command is not None
    assert rmap.command.address == 90
    assert dict(rmap.command.codes) == {1: CommandCode(1, "reboot", {})}
    # a coil's value becomes a relay request as docs/COMMANDS.md defines it
    assert rmap.coils[1].fields(True) == {"relay": 2, "state": "closed"}
    assert rmap.coils[1].fields(False) == {"relay": 2, "state": "open"}


def test_default_writable_points_move_no_register_address() -> None:
    rmap = load_mapping("default")
    # the status block and the auto slots are where docs/MODBUS.md puts them
    assert [(p.address, p.source) for p in rmap.points] == [
        (0, "status:online"), (1, "status:age"), (2, "status:timestamp"),
        (4, "status:timestamp_us"), (6, "status:failed_polls")]
    slots = usable_slots(rmap)
    assert [next(slots) for _ in range(3)] == [0, 1, 2]
    assert Layout.build(rmap).runs == ((0, 7),)  # the command register is not read


def test_user_map_with_devices_and_code_fields(tmp_path: Path) -> None:
    rmap = load_text(tmp_path, (
        "registers: []\n"
        "coils:\n"
        "  - {address: 20, relay: 2, device: {model: PRM3, sn: '7'}, description: pump}\n"
        "  - {address: 10, name: heater, relay: 1}\n"
        "command:\n"
        "  address: 300\n"
        "  name: cmd\n"
        "  codes:\n"
        "    1: reboot\n"
        "    7: {action: cmd, name: clear, body: excess}\n"
        "    8: {action: relay, mask: 3, state: open}\n"))
    assert rmap.coils == (Coil(10, "heater", 1), Coil(20, "relay2", 2, {"model": "PRM3",
                                                                          "sn": "7"}, "pump"))
    assert rmap.coils[1].fields(True) == {"relay": 2, "state": "closed",
                                          "device": {"model": "PRM3", "sn": "7"}}
    assert rmap.command is not None
    assert (rmap.command.address, rmap.command.name) == (300, "cmd")
    assert rmap.command.codes[7] == CommandCode(7, "cmd", {"name": "clear", "body": "excess"})
    assert rmap.command.codes[8] == CommandCode(8, "relay", {"mask": 3, "state": "open"})


def test_extends_keeps_replaces_or_removes_the_base_writable_points(tmp_path: Path) -> None:
    base = load_mapping("default")
    kept = load_text(tmp_path, "extends: default\n")
    assert (kept.coils, kept.command) == (base.coils, base.command)
    replaced = load_text(tmp_path, "extends: default\ncoils: [{address: 5, relay: 3}]\n"
                                   "command: {address: 50, codes: {2: reboot}}\n")
    assert replaced.coils == (Coil(5, "relay3", 3),)
    assert replaced.command is not None
    assert (replaced.command.address, list(replaced.command.codes)) == (50, [2])
    removed = load_text(tmp_path, "extends: default\ncoils: []\ncommand: null\n")
    assert (removed.coils, removed.command) == ((), None)
    sunspec = load_mapping("sunspec")
    assert (sunspec.coils, sunspec.command) == ((), None)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(
        "coils:\n - {address: 0}\n - {address: 1, relay: 0}\n - {adress: 3, relay: 1}\n - 7\n",
        ["coils[0].relay: required key missing",
         "coils[1].relay: must be an integer 1-32 (got 0)",
         "coils[2].adress: unknown key (did you mean 'address'?)",
         "coils[2].address: required key missing",
         "coils[3]: must be a mapping (address, relay) (got 7)"], id="coil-keys"),
    pytest.param(
        "coils:\n - {address: 4, relay: 1}\n - {address: 4, relay: 2}\n",
        ["coils[1].address: coil 4 is also coils[0]"], id="coil-twice"),
    pytest.param(
        "coils:\n - {address: 4, relay: 1, device: {modle: PRM3}}\n"
        " - {address: 5, relay: 1, device: PRM3}\n",
        ["coils[0]: 'device': unknown attribute 'modle'; known: path, interface, link, mfg, "
         "model, name, prot, quality, sn, index",
         "coils[1].device: must be a mapping of /ctrl device attributes (got 'PRM3')"],
        id="coil-device"),
    pytest.param(
        "coils: {address: 0, relay: 1}\n",
        ["coils: must be a list of coil entries (got {'address': 0, 'relay': 1})"],
        id="coils-not-a-list"),
    pytest.param(
        "command: {address: 70000, codes: {}}\n",
        ["command.address: must be an integer 0-65535 (got 70000)",
         "command.codes: must be a mapping of code (1-65535) to action (got {})"],
        id="command-address-and-empty-codes"),
    pytest.param(
        "command: {address: 90}\n", ["command.codes: required key missing"],
        id="command-codes-missing"),
    pytest.param(
        "command: 5\n", ["command: must be a mapping (address, codes) (got 5)"],
        id="command-not-a-mapping"),
    pytest.param(
        "command:\n  address: 90\n  codes: {0: reboot, '2': reboot, 3: rebot, 4: {action: cmd},"
        " 5: {action: reboot, transaction: 1}, 6: [reboot]}\n",
        ["command.codes.0: must be an integer code 1-65535; 0 means no command (got 0)",
         "command.codes.2: must be an integer code 1-65535; 0 means no command (got '2')",
         "command.codes.3: unknown action 'rebot'; known: reboot, cmd, relay, config/get, "
         "config/set, ctrl/call, ctrl/devices, capture, capture/info, ctid/info, ctid/scan, "
         "ctid/flash, log/get, alert/ack, lua/var/get, lua/var/set, api/get",
         "command.codes.4: cmd: the field 'name' is required",
         "command.codes.5: transaction: not allowed in a command code",
         "command.codes.6: must be an action name or a mapping with action and its fields "
         "(got ['reboot'])"], id="command-codes"),
    pytest.param(
        "registers:\n - {address: 90, name: a, source: rate, type: float32}\n"
        "command: {address: 91, codes: {1: reboot}}\n",
        ["command: addresses 91-91 overlap registers[0] (90-91)"], id="command-overlaps"),
    pytest.param(
        "auto: {start: 50, slot: [{source: rate, type: float32}]}\n"
        "command: {address: 60, codes: {1: reboot}}\n",
        ["command: 60 is in the auto block (from 50); use an address below 50"],
        id="command-in-auto-block"),
])
def test_bad_writable_points_are_reported_line_by_line(tmp_path: Path, text: str,
                                                       expected: list[str]) -> None:
    head = "" if text.startswith("registers:") else "registers: []\n"
    assert problems(tmp_path, head + text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("extends: default\nregisters:\n"
                 " - {address: 89, name: a, source: rate, type: float32}\n",
                 ["default command: addresses 90-90 overlap registers[0] (89-90)"],
                 id="inherited-overlap"),
    pytest.param("extends: default\nauto: {start: 50, slot: [{source: rate, type: float32}]}\n",
                 ["default command: 90 is in the auto block (from 50); use an address below 50"],
                 id="inherited-in-auto-block"),
])
def test_inherited_command_register_is_checked_too(tmp_path: Path, text: str,
                                                   expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


@pytest.mark.parametrize("name", ["default", "user"])
def test_generated_map_keeps_the_writable_points(tmp_path: Path, name: str) -> None:
    source = load_mapping("default") if name == "default" else load_text(tmp_path, (
        "registers: []\ncoils: [{address: 3, name: 'pump #1', relay: 2, device: {model: PRM3}}]\n"
        "command: {address: 7, codes: {3: {action: cmd, name: clear, body: excess},"
        " 4: ctrl/devices}}\n"))
    path = tmp_path / "drafted.yaml"
    path.write_text("registers: []\n" + render_writes(source), encoding="utf-8")
    drafted = parse_mapping(load_yaml(path, error=MappingError), str(path))
    assert (drafted.coils, drafted.command) == (source.coils, source.command)
