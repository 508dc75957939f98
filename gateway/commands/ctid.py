"""The CTid actions: ``ctid/info``, ``ctid/scan`` and ``ctid/flash`` through ``/ctid``.

- ``ctid/info`` reads what the meter has stored (``GET /ctid`` or ``GET /ctid/{port}``).
- ``ctid/scan`` identifies the sensor on a port: ``POST /ctid/{port} {"op": "scan", "tid",
  "polarity"}`` with a fresh random ``tid``, then ``GET /ctid/{port}?tid=<tid>`` until the
  reply carries that ``tid`` and ``port`` (the handshake of egauge-webapi §8), at most
  ``timeout_s``; a port whose sensor never answers (a plain CT) ends with ``POST /ctid/stop``
  and a ``timeout`` answer.
- ``ctid/flash`` makes a sensor's LED blink (``POST /ctid/{port} {"op": "flash", ...}``);
  ``{"stop": true}`` ends a flash or scan (``POST /ctid/stop``).

Scanning and flashing suspend the meter's measurement, so both are disruptive: they share
one cool-down per meter (``commands.ctid_cooldown_s``), a dry run says ``disruptive``, and
stopping is never held back.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from gateway.commands.envelope import Fields, invalid
from gateway.commands.policy import Need
from gateway.commands.session import Quick, Session, WebApiCall
from gateway.errors import CommandError, ErrorCode

MAX_PORT: Final = 99
DEFAULT_SCAN_TIMEOUT_S: Final = 30.0
MAX_SCAN_TIMEOUT_S: Final = 300.0
_POLL_FIRST_S: Final = 0.1
_POLL_MAX_S: Final = 1.0
STOP_CALL: Final = WebApiCall("POST", "/ctid/stop", {})


def new_tid() -> int:
    """A random transaction id, 1 .. 2^32-1."""
    return secrets.randbelow((1 << 32) - 1) + 1


@dataclass(frozen=True, slots=True)
class CtidInfo(Quick):
    port: int | None
    need: ClassVar[Need] = Need("ctid")

    async def run(self, session: Session) -> Any:
        path = "/ctid" if self.port is None else f"/ctid/{self.port}"
        reply = await session.send(WebApiCall("GET", path))
        if self.port is None:
            return {"info": _obj(reply).get("info", [])}
        return {"port": self.port, "info": reply or None}


@dataclass(frozen=True, slots=True)
class CtidScan:
    port: int
    polarity: str
    timeout_s: float
    need: ClassVar[Need] = Need("ctid-scan")
    reboots: ClassVar[bool] = False
    cooldown: ClassVar[str] = "ctid"

    @property
    def wait_s(self) -> float:
        return self.timeout_s

    async def run(self, session: Session) -> Any:
        tid = new_tid()
        start = WebApiCall("POST", f"/ctid/{self.port}",
                           {"op": "scan", "tid": tid, "polarity": self.polarity})
        await session.send(start, disruptive=True)
        poll = WebApiCall("GET", f"/ctid/{self.port}", query=f"tid={tid}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        delay = _POLL_FIRST_S
        while True:
            reply = _obj(await session.read(poll))
            if reply.get("tid") == tid and reply.get("port") == self.port:
                sensor = {k: v for k, v in reply.items() if k not in ("tid", "port")}
                return {"port": self.port, "tid": tid, "sensor": sensor}
            if loop.time() + delay > deadline:
                await session.read(STOP_CALL)
                raise CommandError(ErrorCode.TIMEOUT, f"no CTid sensor answered on port "
                                   f"{self.port} within {self.timeout_s:g} s (a plain CT has "
                                   "none); the scan was stopped")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _POLL_MAX_S)


@dataclass(frozen=True, slots=True)
class CtidFlash:
    port: int | None  # None: stop
    polarity: str
    need: ClassVar[Need] = Need("ctid-flash")
    reboots: ClassVar[bool] = False
    wait_s: ClassVar[float] = 0.0

    @property
    def cooldown(self) -> str:
        return "" if self.port is None else "ctid"

    async def run(self, session: Session) -> Any:
        if self.port is None:
            await session.send(STOP_CALL)
            return {"stopped": True}
        tid = new_tid()
        call = WebApiCall("POST", f"/ctid/{self.port}",
                          {"op": "flash", "tid": tid, "polarity": self.polarity})
        await session.send(call, disruptive=True)
        return {"port": self.port, "tid": tid, "flashing": True}


def _obj(reply: Any) -> dict[str, Any]:
    return reply if isinstance(reply, dict) else {}


def _port(f: Fields, *, required: bool) -> int | None:
    port = f.take("port", "number", required=required)
    if port is not None and not 1 <= port <= MAX_PORT:
        raise invalid(f"{f.action}: 'port' must be a sensor port 1..{MAX_PORT}, got {port}")
    return port  # type: ignore[no-any-return]


def _polarity(f: Fields) -> str:
    polarity: str = f.take("polarity", "string", default="+")
    if polarity not in ("+", "-"):
        raise invalid(f"{f.action}: 'polarity' must be \"+\" or \"-\", got {polarity!r}")
    return polarity


def parse_info(f: Fields) -> CtidInfo:
    return CtidInfo(_port(f, required=False))


def parse_scan(f: Fields) -> CtidScan:
    port = _port(f, required=True)
    assert port is not None
    polarity = _polarity(f)
    timeout = f.take("timeout_s", "any", default=DEFAULT_SCAN_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0 < timeout <= MAX_SCAN_TIMEOUT_S):
        raise invalid(f"ctid/scan: 'timeout_s' must be a number of seconds above 0 and at "
                      f"most {MAX_SCAN_TIMEOUT_S:g}")
    return CtidScan(port, polarity, float(timeout))


def parse_flash(f: Fields) -> CtidFlash:
    stop = f.take("stop", "boolean", default=False)
    port = _port(f, required=not stop)
    polarity = _polarity(f)
    if stop and (port is not None or f.has("polarity")):
        raise invalid("ctid/flash: 'stop' takes no 'port' or 'polarity'")
    return CtidFlash(None if stop else port, polarity)
