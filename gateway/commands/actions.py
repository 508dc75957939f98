"""The command actions: each request payload checked and turned into WebAPI calls.

:func:`parse_action` validates one action's fields (everything but ``transaction`` and
``dry_run``) and returns an :class:`Action`: the permission it needs and how to run it. An
action talks to its meter only through a :class:`Session`, which takes the meter's lane
around every call and, for a dry run, stops at the action's own call and reports it as a
:class:`WebApiCall` instead of making it. The actions of ``/cmd``, ``/ctrl`` and ``/config``
live here; those of the other services in :mod:`gateway.commands.capture`,
:mod:`gateway.commands.ctid` and :mod:`gateway.commands.diagnostics`, registered in the
action table below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from gateway.commands import capture, ctid, diagnostics
from gateway.commands.envelope import Fields, invalid, json_kind
from gateway.commands.policy import Need
from gateway.commands.redaction import mask, mask_at
from gateway.commands.session import Action, Planned, Quick, Session, WebApiCall
from gateway.config import allowlist
from gateway.errors import CommandError, MeterReportedError

__all__ = ["ACTIONS", "DEFAULT_RELAY_COUNT", "Action", "Planned", "Session", "WebApiCall",
           "parse_action"]

RELAY_METHODS: Final = {"closed": "relay.close", "open": "relay.open"}
RELAY_MASK_METHODS: Final = {"closed": "relay.close_mask", "open": "relay.open_mask"}
RELAY_COUNTS: Final = {"prm3": 3}  # relays per device model (lower-case)
DEFAULT_RELAY_COUNT: Final = 3
MAX_ARGS: Final = 16


# -- the actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cmd:
    """``POST /cmd/<name>`` (``reboot`` is this with name "reboot" and its own permission)."""

    name: str
    body: Any = None
    as_reboot: bool = False  # the ``reboot`` action rather than ``cmd``

    @property
    def need(self) -> Need:
        return Need("reboot") if self.as_reboot else Need("cmd", self.name)

    @property
    def reboots(self) -> bool:
        return self.name == "reboot"

    @property
    def cooldown(self) -> str:
        return "reboot" if self.reboots else ""

    wait_s: ClassVar[float] = 0.0

    async def run(self, session: Session) -> Any:
        call = WebApiCall("POST", "/cmd/" + self.name, mask(self.body))
        return await session.call(call, lambda c: c.cmd(self.name, self.body))


@dataclass(frozen=True, slots=True)
class ConfigGet(Quick):
    path: str

    @property
    def need(self) -> Need:
        return Need("config-read", self.path)

    async def run(self, session: Session) -> Any:
        call = WebApiCall("GET", "/config" + self.path)
        value, _ = await session.call(call, lambda c: c.get_config(self.path))
        return {"path": self.path, "value": mask_at(self.path, value)}


@dataclass(frozen=True, slots=True)
class ConfigSet(Quick):
    path: str
    value: Any
    merge: bool

    @property
    def need(self) -> Need:
        return Need("config", self.path)

    async def run(self, session: Session) -> Any:
        current, etag = await self._current(session)
        have, want = json_kind(current), json_kind(self.value)
        if current is not None and have != want:
            raise invalid(f"config/set: {self.path} holds {_A[have]}, the new value is "
                          f"{_A.get(want, want)}; the types must match")
        call = WebApiCall("POST" if self.merge else "PUT", "/config" + self.path,
                          mask_at(self.path, self.value), {"If-Match": etag} if etag else {})
        await session.call(
            call, lambda c: c.set_config(self.path, self.value, etag=etag, merge=self.merge)
        )
        return {"path": self.path, "merge": self.merge}

    async def _current(self, session: Session) -> tuple[Any, str | None]:
        """The value now at the path and the ETag; for a path the meter does not show (a
        write-only leaf, a new member) None and the ETag of its parent."""
        try:
            return await session.lookup(lambda c: c.get_config(self.path))
        except MeterReportedError:
            parent = self.path.rsplit("/", 1)[0]
            if not parent:
                raise
            value, etag = await session.lookup(lambda c: c.get_config(parent))
            if not isinstance(value, dict):
                raise
            return None, etag


_A: Final = {"null": "null", "boolean": "a boolean", "number": "a number",
             "string": "a string", "array": "an array", "object": "an object"}


@dataclass(frozen=True, slots=True)
class CtrlCall(Quick):
    device: dict[str, Any]
    method: str
    args: list[Any]

    @property
    def need(self) -> Need:
        return Need("ctrl", self.method)

    async def run(self, session: Session) -> Any:
        return await call_and_wait(session, self.device, self.method, self.args)


async def call_and_wait(
    session: Session, attrs: dict[str, Any], method: str, args: list[Any]
) -> dict[str, Any]:
    """``POST /ctrl/call`` then poll ``/ctrl/call/{tid}`` for the method's return value."""
    call = WebApiCall("POST", "/ctrl/call", {"attrs": attrs, "method": method, "args": args})
    tid = await session.call(call, lambda c: c.ctrl_call(attrs, method, args))
    result = await session.ctrl_result(tid)
    return {"device": attrs, "method": method, "args": args, "tid": tid, "result": result}


@dataclass(frozen=True, slots=True)
class CtrlDevices(Quick):
    device: dict[str, Any] | None
    need: ClassVar[Need] = Need("ctrl/devices")

    async def run(self, session: Session) -> Any:
        call = WebApiCall("GET", "/ctrl/device")
        devices = await session.call(call, lambda c: c.ctrl_devices(self.device))
        return {"devices": devices}


def _parse_cmd(f: Fields) -> Cmd:
    name: str = f.take("name", "string", required=True)
    if not isinstance(allowlist.parse("cmd:" + name), allowlist.AllowEntry):
        raise invalid(f"cmd: 'name' must match [a-z][a-z0-9-]*, got {name!r}")
    body = f.take("body", "any")
    return Cmd(name, body)


def _parse_ctrl_call(f: Fields) -> CtrlCall:
    device = f.device(required=True)
    assert device is not None
    method: str = f.take("method", "string", required=True)
    if not isinstance(allowlist.parse("ctrl:" + method), allowlist.AllowEntry):
        raise invalid(f"ctrl/call: 'method' must look like relay.close, got {method!r}")
    args: list[Any] = f.take("args", "array", default=[])
    if len(args) > MAX_ARGS:
        raise invalid(f"ctrl/call: at most {MAX_ARGS} arguments")
    return CtrlCall(device, method, list(args))


@dataclass(frozen=True, slots=True)
class Relay(Quick):
    """Open or close one relay (1-based) or every relay of a mask on a relay device."""

    state: str
    relay: int | None
    mask: int | None
    device: dict[str, Any] | None
    need: ClassVar[Need] = Need("relay")

    def _request(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"state": self.state}
        if self.relay is not None:
            shown["relay"] = self.relay
        if self.mask is not None:
            shown["mask"] = self.mask
        if self.device:
            shown["device"] = self.device
        return shown

    async def run(self, session: Session) -> Any:
        attrs, count = await self._target(session)
        if self.relay is not None:
            if self.relay > count:
                raise invalid(f"relay: 'relay' must be 1..{count} on this device")
            method, args = RELAY_METHODS[self.state], [self.relay - 1]
        else:
            assert self.mask is not None
            if self.mask >= 1 << count:
                raise invalid(f"relay: 'mask' must be 1..{(1 << count) - 1} on this device")
            method, args = RELAY_MASK_METHODS[self.state], [self.mask]
        return {**self._request(), **await call_and_wait(session, attrs, method, args)}

    async def _target(self, session: Session) -> tuple[dict[str, Any], int]:
        devices = await session.lookup(lambda c: c.ctrl_devices())
        return choose_relay_device(devices, self.device)


def choose_relay_device(devices: Sequence[Mapping[str, Any]],
                        wanted: Mapping[str, Any] | None) -> tuple[dict[str, Any], int]:
    """The call attributes and relay count of the one relay device among ``devices`` that
    has every ``wanted`` attribute (``index`` picks the n-th match)."""
    found = [d for d in devices if "relay" in _listed(d.get("interface"))]
    found = [d for d in found if _matches(d, {k: v for k, v in (wanted or {}).items()
                                              if k != "index"})]
    if wanted and "index" in wanted:
        found = found[wanted["index"]:wanted["index"] + 1]
    if not found:
        which = f" matching {dict(wanted)}" if wanted else ""
        raise invalid(f"relay: the meter has no relay device{which}")
    if len(found) > 1:
        names = ", ".join(f"{d.get('model')} sn {d.get('sn')}" for d in found)
        raise invalid(f"relay: several relay devices ({names}); choose one with "
                       '"device": {"model": ..., "sn": ...}')
    chosen = found[0]
    attrs = {k: chosen[k] for k in ("mfg", "model", "sn") if isinstance(chosen.get(k), str)}
    count = RELAY_COUNTS.get(str(chosen.get("model", "")).lower(), DEFAULT_RELAY_COUNT)
    return attrs or {"path": chosen.get("path")}, count


def _listed(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, list):
        return [str(v).lower() for v in value]
    return []


def _matches(device: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a listed device has every wanted attribute (strings compared case-blind)."""
    for key, value in wanted.items():
        have = _listed(device.get(key))
        if not set(_listed(value)) <= set(have):
            return False
    return True


def _parse_relay(f: Fields) -> Relay:
    state: str = f.take("state", "string", required=True)
    if state not in RELAY_METHODS:
        raise invalid(f"relay: 'state' must be \"closed\" or \"open\", got {state!r}")
    relay = f.take("relay", "number")
    bits = f.take("mask", "number")
    if (relay is None) == (bits is None):
        raise invalid("relay: give exactly one of 'relay' (1-based) and 'mask'")
    if relay is not None and relay < 1:
        raise invalid(f"relay: 'relay' counts from 1, got {relay}")
    if bits is not None and not 1 <= bits < 1 << 32:
        raise invalid(f"relay: 'mask' must be a positive 32-bit number, got {bits}")
    return Relay(state, relay, bits, f.device(required=False))


_PARSERS: Final[dict[str, Callable[[Fields], Action]]] = {
    "reboot": lambda f: Cmd("reboot", as_reboot=True),
    "cmd": _parse_cmd,
    "relay": _parse_relay,
    "config/get": lambda f: ConfigGet(f.config_path()),
    "config/set": lambda f: ConfigSet(
        f.config_path(), f.take("value", "any", required=True),
        f.take("merge", "boolean", default=False),
    ),
    "ctrl/call": _parse_ctrl_call,
    "ctrl/devices": lambda f: CtrlDevices(f.device(required=False)),
    "capture": capture.parse_capture,
    "capture/info": lambda f: capture.CaptureInfo(),
    "ctid/info": ctid.parse_info,
    "ctid/scan": ctid.parse_scan,
    "ctid/flash": ctid.parse_flash,
    "log/get": diagnostics.parse_log,
    "alert/ack": diagnostics.parse_ack,
    "lua/var/get": diagnostics.parse_lua_get,
    "lua/var/set": diagnostics.parse_lua_set,
    "api/get": diagnostics.parse_api_get,
}
ACTIONS: Final = tuple(_PARSERS)


def parse_action(action: str, payload: Mapping[str, Any]) -> Action:
    """The validated action; ``CommandError`` (``invalid`` / ``unknown_action``) otherwise."""
    parser = _PARSERS.get(action)
    if parser is None:
        raise CommandError(
            "unknown_action", f"unknown action {action!r}; known: {', '.join(ACTIONS)}"
        )
    f = Fields(action, payload)
    parsed = parser(f)
    f.done()
    return parsed
