"""Modbus writes as meter commands: coils switch relays, the command register runs a code.

:class:`ModbusWrites` is the server's write handler (only with ``modbus.writes: true``). It
checks a request PDU against the unit's writable points and turns it into command requests
(``source: "modbus"``, ``client``: the peer address) for the :class:`CommandRouter`, which
applies the meter's ``commands.allow``, its lane, the timeout and the audit. Checks in this
order, each with its exception code:

1. function code: FC01, FC05, FC06, FC15, FC16 (else 0x01);
2. a malformed PDU, a count out of range, a byte count that does not match it, a coil value
   other than 0xFF00/0x0000 (0x03);
3. address: every address must be a coil of the map, or exactly the command register (0x02);
4. a command code the map does not list (0x03); code 0 is accepted and does nothing;
5. the router's answer: ``not_allowed`` 0x01, ``invalid`` 0x03, ``offline`` 0x0B, ``busy``
   and ``cooldown`` 0x06, anything else (``timeout``, ``meter_error``, ...) 0x04.

FC15 makes one ``relay`` request per coil, in address order, and stops at the first that
fails (the coils before it were switched).

FC01 reads the coils from memory: the relay state last set by a ``relay`` request that
succeeded (from Modbus or MQTT, as the router's outcomes report it), 0 when none is known.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

from gateway.commands import Command, CommandResponse, OutcomeListener
from gateway.commands import Outcome as CommandOutcome
from gateway.modbus.image import ILLEGAL_ADDRESS, TARGET_FAILED
from gateway.modbus.mapping import Coil, RegisterMap
from gateway.modbus.server import ILLEGAL_FUNCTION, ILLEGAL_VALUE, SERVER_FAILURE, Outcome

READ_COILS: Final = 1
WRITE_COIL: Final = 5
WRITE_REGISTER: Final = 6
WRITE_COILS: Final = 15
WRITE_REGISTERS: Final = 16
BUSY: Final = 0x06
COIL_ON: Final = 0xFF00
COIL_OFF: Final = 0x0000
MAX_COIL_READ: Final = 2000
MAX_COIL_WRITE: Final = 1968
MAX_REGISTER_WRITE: Final = 123
NO_COMMAND: Final = 0  # accepted and ignored, so a client may clear the register afterwards
EXCEPTIONS: Final = {"not_allowed": ILLEGAL_FUNCTION, "invalid": ILLEGAL_VALUE,
                     "offline": TARGET_FAILED, "busy": BUSY, "cooldown": BUSY}
_PAIR: Final = struct.Struct(">HH")
_MULTI: Final = struct.Struct(">HHB")

Request = tuple[str, dict[str, Any]]  # action, fields


class Router(Protocol):
    """The command router as the writes use it (:class:`gateway.commands.router.CommandRouter`)."""

    async def submit(self, command: Command) -> CommandResponse: ...

    def on_outcome(self, listener: OutcomeListener) -> None: ...


class UnitWrites:
    """One unit's writable points and the last known state of its coils."""

    def __init__(self, meter: str, rmap: RegisterMap, online: Callable[[], bool]) -> None:
        self.meter = meter
        self.coils: dict[int, Coil] = {c.address: c for c in rmap.coils}
        self.command = rmap.command
        self.closed: dict[int, bool] = {}  # coil address -> relay closed
        self._online = online

    def read_coils(self, address: int, count: int) -> bytes | int:
        """``count`` coil states from ``address`` packed as FC01 answers them."""
        addresses = range(address, address + count)
        if any(a not in self.coils for a in addresses):
            return ILLEGAL_ADDRESS
        if not self._online():
            return TARGET_FAILED
        bits = bytearray((count + 7) // 8)
        for i, a in enumerate(addresses):
            if self.closed.get(a):
                bits[i // 8] |= 1 << (i % 8)
        return bytes(bits)

    def note(self, outcome: CommandOutcome) -> None:
        """Follow a ``relay`` request of this meter that succeeded."""
        if outcome.command.action != "relay" or not outcome.succeeded:
            return
        request = outcome.command.fields
        closed = request.get("state") == "closed"
        relay, mask = request.get("relay"), request.get("mask")
        for coil in self.coils.values():
            if (coil.device or None) != (request.get("device") or None):
                continue
            if coil.relay == relay or (isinstance(mask, int) and mask >> (coil.relay - 1) & 1):
                self.closed[coil.address] = closed


class ModbusWrites:
    """The server's write handler: ``writes(unit_id, pdu, peer)``."""

    def __init__(self, router: Router, units: Callable[[int], UnitWrites | None]) -> None:
        self._router = router
        self._units = units

    def __call__(self, unit_id: int, pdu: bytes, peer: str
                 ) -> Outcome | Coroutine[Any, Any, Outcome]:
        unit = self._units(unit_id)
        fc = pdu[0]
        if unit is not None and fc == READ_COILS:
            return _read_coils(unit, pdu)
        parser = _PARSERS.get(fc)
        if unit is None or parser is None:
            return ILLEGAL_FUNCTION
        parsed = parser(unit, pdu)
        if isinstance(parsed, int):
            return parsed
        requests, reply = parsed
        if not requests:
            return reply
        return self._run(unit.meter, requests, reply, peer)

    async def _run(self, meter: str, requests: list[Request], reply: bytes, peer: str
                   ) -> Outcome:
        """The requests one after the other; the first that fails answers for all."""
        for action, fields in requests:
            response = await self._router.submit(
                Command.of(meter, action, fields, source="modbus", client=peer))
            if not response.ok:
                return EXCEPTIONS.get(response.code or "", SERVER_FAILURE)
        return reply


def _read_coils(unit: UnitWrites, pdu: bytes) -> Outcome:
    if len(pdu) != 5:
        return ILLEGAL_VALUE
    address, count = _PAIR.unpack_from(pdu, 1)
    if not 1 <= count <= MAX_COIL_READ:
        return ILLEGAL_VALUE
    bits = unit.read_coils(address, count)
    if isinstance(bits, int):
        return bits
    return bytes((READ_COILS, len(bits))) + bits


Parsed = tuple[list[Request], bytes] | int  # the requests and the answer, or an exception


def _write_coil(unit: UnitWrites, pdu: bytes) -> Parsed:
    if len(pdu) != 5:
        return ILLEGAL_VALUE
    address, value = _PAIR.unpack_from(pdu, 1)
    if value not in (COIL_ON, COIL_OFF):
        return ILLEGAL_VALUE
    coil = unit.coils.get(address)
    if coil is None:
        return ILLEGAL_ADDRESS
    return [("relay", coil.fields(value == COIL_ON))], pdu


def _write_coils(unit: UnitWrites, pdu: bytes) -> Parsed:
    if len(pdu) < 6:
        return ILLEGAL_VALUE
    address, count, size = _MULTI.unpack_from(pdu, 1)
    if not 1 <= count <= MAX_COIL_WRITE or size != (count + 7) // 8 or len(pdu) != 6 + size:
        return ILLEGAL_VALUE
    coils = [unit.coils.get(a) for a in range(address, address + count)]
    requests: list[Request] = []
    for i, coil in enumerate(coils):
        if coil is None:
            return ILLEGAL_ADDRESS
        requests.append(("relay", coil.fields(bool(pdu[6 + i // 8] >> (i % 8) & 1))))
    return requests, pdu[:5]


def _write_register(unit: UnitWrites, pdu: bytes) -> Parsed:
    if len(pdu) != 5:
        return ILLEGAL_VALUE
    address, code = _PAIR.unpack_from(pdu, 1)
    return _command(unit, address, 1, code, pdu)


def _write_registers(unit: UnitWrites, pdu: bytes) -> Parsed:
    if len(pdu) < 6:
        return ILLEGAL_VALUE
    address, count, size = _MULTI.unpack_from(pdu, 1)
    if not 1 <= count <= MAX_REGISTER_WRITE or size != 2 * count or len(pdu) != 6 + size:
        return ILLEGAL_VALUE
    return _command(unit, address, count, int.from_bytes(pdu[6:8], "big"), pdu[:5])


def _command(unit: UnitWrites, address: int, count: int, code: int, reply: bytes) -> Parsed:
    command = unit.command
    if command is None or address != command.address or count != 1:
        return ILLEGAL_ADDRESS
    if code == NO_COMMAND:
        return [], reply
    known = command.codes.get(code)
    if known is None:
        return ILLEGAL_VALUE
    return [(known.action, dict(known.fields))], reply


_PARSERS: Final[dict[int, Callable[[UnitWrites, bytes], Parsed]]] = {
    WRITE_COIL: _write_coil,
    WRITE_COILS: _write_coils,
    WRITE_REGISTER: _write_register,
    WRITE_REGISTERS: _write_registers,
}
