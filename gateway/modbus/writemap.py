"""Checking a map's writable points: ``coils`` (relays) and the ``command`` register.

A coil names a relay; a command code names an action and its fields, checked here the way the
command router checks a request, so a map never holds a write that the router would refuse as
malformed. Whether the meter allows it is the router's business at the time of the write.
Absent keys take the base map's entries (``extends:``); ``coils: []`` or ``command: null``
removes them.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from typing import Any, Final

from gateway.commands import ENVELOPE, parse_action
from gateway.config import MISSING, Context, Section, join
from gateway.errors import CommandError
from gateway.modbus.mapping import Coil, CommandCode, CommandRegister, Point, RegisterMap

_COIL_KEYS: Final = ("address", "name", "relay", "device", "description")
_COMMAND_KEYS: Final = ("address", "name", "codes", "description")
MAX_ADDRESS: Final = 65535
MAX_CODE: Final = 65535
MAX_RELAY: Final = 32  # the relay action's masks are 32 bits wide


def writable(root: Section, base: RegisterMap | None
             ) -> tuple[tuple[Coil, ...], CommandRegister | None]:
    """The map's coils and command register (the base map's where the file names none)."""
    coils = base.coils if base is not None else ()
    command = base.command if base is not None else None
    if root.has("coils"):
        coils = _coils(root)
    if root.has("command"):
        command = _command(root)
    return coils, command


def command_point(command: CommandRegister) -> Point:
    """The register the command register occupies, for the overlap check only (a read of it
    is answered 0x02: it is write-only)."""
    return Point(command.address, command.name, "none", "uint16")


def check_command_address(ctx: Context, command: CommandRegister | None, auto_start: int | None,
                          label: str) -> None:
    """The command register may not sit where auto slots go (from the auto block's start)."""
    if command is not None and auto_start is not None and command.address >= auto_start:
        ctx.problem(label, f"{command.address} is in the auto block (from {auto_start}); "
                           f"use an address below {auto_start}")


def _coils(root: Section) -> tuple[Coil, ...]:
    raw = root.raw("coils")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        return root.fail("coils", "must be a list of coil entries", raw, ())
    coils: list[Coil] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(raw):
        path = join("coils", i)
        coil = _coil(root.ctx, path, item)
        if coil is None:
            continue
        if coil.address in seen:
            root.ctx.problem(join(path, "address"), f"coil {coil.address} is also "
                                                    f"coils[{seen[coil.address]}]")
            continue
        seen[coil.address] = i
        coils.append(coil)
    return tuple(sorted(coils, key=lambda c: c.address))


def _coil(ctx: Context, path: str, data: object) -> Coil | None:
    s = Section.of(ctx, path, data, _COIL_KEYS, what="a mapping (address, relay)")
    if s is None:
        return None
    before = len(ctx.problems)
    address = _required_int(s, "address", 0, MAX_ADDRESS)
    relay = _required_int(s, "relay", 1, MAX_RELAY)
    name = s.optional_string("name")
    description = s.optional_string("description") or ""
    device = s.raw("device")
    if device is MISSING or device is None:
        device = None
    elif not isinstance(device, MappingABC):
        device = s.fail("device", "must be a mapping of /ctrl device attributes", device, None)
    if len(ctx.problems) > before:
        return None
    coil = Coil(address, name or f"relay{relay}", relay,
                None if device is None else dict(device), description)
    _check_request(ctx, path, "relay", coil.fields(True))
    return coil if len(ctx.problems) == before else None


def _command(root: Section) -> CommandRegister | None:
    if root.raw("command") is None:
        return None
    s = root.section("command", _COMMAND_KEYS, what="a mapping (address, codes)")
    if s is None:
        return None
    before = len(s.ctx.problems)
    address = _required_int(s, "address", 0, MAX_ADDRESS)
    name = s.optional_string("name") or "command"
    description = s.optional_string("description") or ""
    codes = _codes(s)
    if len(s.ctx.problems) > before:
        return None
    return CommandRegister(address, name, codes, description)


def _codes(s: Section) -> dict[int, CommandCode]:
    raw = s.raw("codes", required=True)
    if raw is MISSING:
        return {}
    if not isinstance(raw, MappingABC) or not raw:
        return s.fail("codes", "must be a mapping of code (1-65535) to action", raw, {})
    codes: dict[int, CommandCode] = {}
    for key, value in raw.items():
        path = join(s.at("codes"), str(key))
        if isinstance(key, bool) or not isinstance(key, int) or not 1 <= key <= MAX_CODE:
            s.ctx.problem(path, "must be an integer code 1-65535; 0 means no command", key)
            continue
        parsed = _code(s.ctx, path, key, value)
        if parsed is not None:
            codes[key] = parsed
    return codes


def _code(ctx: Context, path: str, code: int, value: object) -> CommandCode | None:
    """``reboot`` or ``{action: cmd, name: clear, body: excess}``."""
    if isinstance(value, str) and value:
        action, fields = value, {}
    elif isinstance(value, MappingABC) and isinstance(value.get("action"), str):
        action = value["action"]
        fields = {str(k): v for k, v in value.items() if k != "action"}
    else:
        ctx.problem(path, "must be an action name or a mapping with action and its fields",
                    value)
        return None
    envelope = sorted(k for k in fields if k in ENVELOPE)
    if envelope:
        ctx.problem(path, f"{', '.join(envelope)}: not allowed in a command code")
        return None
    if not _check_request(ctx, path, action, fields):
        return None
    return CommandCode(code, action, fields)


def _check_request(ctx: Context, path: str, action: str, fields: MappingABC[str, Any]) -> bool:
    try:
        parse_action(action, fields)
    except CommandError as exc:
        ctx.problem(path, exc.message)
        return False
    return True


def _required_int(s: Section, key: str, lo: int, hi: int) -> int:
    if not s.has(key):
        s.ctx.problem(s.at(key), "required key missing")
        return -1
    return s.integer(key, -1, lo, hi)
