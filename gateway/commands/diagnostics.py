"""The actions that read a meter's logs and Lua variables and reach the rest of its API:
``log/get``, ``alert/ack``, ``lua/var/get``, ``lua/var/set`` and ``api/get``.

- ``log/get``: ``GET /log/system``, ``/log/kernel?after=``, ``/log/lua/<script>?after=``,
  ``/log/alert?after=&min_prio=``; each log needs its own ``log:NAME`` entry.
- ``alert/ack``: ``POST /log/alert {"ids": [...]}`` (``"all"``: no body, every entry).
- ``lua/var/get``: ``GET /lua/var[/<name>]``; the meter keeps each value as JSON text, the
  answer has it decoded. ``lua/var/set``: ``PUT /lua/var/<name>/value`` with the value's
  JSON text as a JSON string (a script that sets the variable itself may overwrite it).
- ``api/get``: ``GET /api<path>`` of any path an ``api-read:`` entry covers (never ``/auth``,
  whose GETs log in and out), without a query; secret-shaped members of the reply (named
  like a password, hash, key, token ...) and JWT-shaped strings are masked.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from gateway.commands.envelope import Fields, invalid
from gateway.commands.policy import Need
from gateway.commands.redaction import MASK, is_secret_name, mask_at
from gateway.commands.session import Quick, Session, WebApiCall
from gateway.config import allowlist
from gateway.meter import parse_alerts, parse_entries

MAX_IDS: Final = 256
_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_AFTER_LOGS: Final = ("kernel", "alert")  # and lua/<script>


@dataclass(frozen=True, slots=True)
class LogGet(Quick):
    log: str  # system | kernel | alert | lua/<script>
    after: float | None
    min_prio: int | None

    @property
    def need(self) -> Need:
        return Need("log", self.log)

    async def run(self, session: Session) -> Any:
        query = []
        if self.after is not None:
            query.append(f"after={_num(self.after)}")
        if self.min_prio is not None:
            query.append(f"min_prio={self.min_prio}")
        reply = await session.send(WebApiCall("GET", "/log/" + self.log, query="&".join(query)))
        if self.log == "alert":
            alerts, drops = parse_alerts(session.meter, reply)
            return {"log": self.log, "drops": drops, "entries": [a.as_json() for a in alerts]}
        return {"log": self.log, "entries": parse_entries(session.meter, reply)}


@dataclass(frozen=True, slots=True)
class AlertAck(Quick):
    ids: tuple[int, ...] | None  # None: every entry
    need: ClassVar[Need] = Need("alert-ack")

    async def run(self, session: Session) -> Any:
        body = None if self.ids is None else {"ids": list(self.ids)}
        await session.send(WebApiCall("POST", "/log/alert", body))
        return {"acked": "all" if self.ids is None else list(self.ids)}


@dataclass(frozen=True, slots=True)
class LuaGet(Quick):
    name: str | None  # None: every variable

    @property
    def need(self) -> Need:
        return Need("lua-read", self.name or "*")

    async def run(self, session: Session) -> Any:
        path = "/lua/var" if self.name is None else f"/lua/var/{self.name}"
        reply = await session.send(WebApiCall("GET", path))
        result = reply.get("result") if isinstance(reply, dict) else None
        if not isinstance(result, dict):
            return {"name": self.name, "value": None} if self.name else {"vars": {}}
        if self.name is not None:
            return {"name": self.name, **_variable(result)}
        return {"vars": {n: _variable(v) for n, v in result.items()}}


@dataclass(frozen=True, slots=True)
class LuaSet(Quick):
    name: str
    value: Any

    @property
    def need(self) -> Need:
        return Need("lua", self.name)

    async def run(self, session: Session) -> Any:
        text = json.dumps(self.value, separators=(",", ":"), ensure_ascii=False)
        shown = MASK if is_secret_name(self.name) else text
        call = WebApiCall("PUT", f"/lua/var/{self.name}/value", shown)
        await session.send(call, text)
        return {"name": self.name,
                "value": MASK if is_secret_name(self.name) else self.value}


@dataclass(frozen=True, slots=True)
class ApiGet(Quick):
    path: str

    @property
    def need(self) -> Need:
        return Need("api-read", self.path)

    async def run(self, session: Session) -> Any:
        reply = await session.send(WebApiCall("GET", self.path))
        return {"path": self.path, "value": masked_reply(self.path, reply)}


def masked_reply(path: str, value: Any) -> Any:
    """A reply for display: secret-named members and paths masked, JWT-shaped strings too."""
    return _tokens(mask_at(path, value))


def _tokens(value: Any) -> Any:
    if isinstance(value, str):
        return _JWT.sub(MASK, value)
    if isinstance(value, dict):
        return {k: _tokens(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tokens(v) for v in value]
    return value


def _variable(entry: Any) -> dict[str, Any]:
    """``{"value": "<JSON text>", "desc"}`` with the value decoded (text that is not JSON
    stays text)."""
    if not isinstance(entry, dict):
        return {"value": entry, "desc": None}
    text = entry.get("value")
    value: Any = text
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except ValueError:
            value = text
    return {"value": value, "desc": entry.get("desc")}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def parse_log(f: Fields) -> LogGet:
    name: str = f.take("log", "string", required=True)
    if not allowlist.is_log_name(name) or name == "lua":
        raise invalid(f"log/get: 'log' must be system, kernel, alert or lua/SCRIPT, "
                      f"got {name!r}")
    after = f.take("after", "any")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int | float)
                              or not math.isfinite(after)):
        raise invalid("log/get: 'after' must be a timestamp (Unix seconds)")
    if after is not None and name == "system":
        raise invalid("log/get: the system log takes no 'after'")
    min_prio = f.take("min_prio", "number")
    if min_prio is not None and (name != "alert" or not 0 <= min_prio <= 7):
        raise invalid("log/get: 'min_prio' is a priority 0..7 of the alert log")
    return LogGet(name, None if after is None else float(after), min_prio)


def parse_ack(f: Fields) -> AlertAck:
    ids = f.take("ids", "any", required=True)
    if ids == "all":
        return AlertAck(None)
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise invalid(f"alert/ack: 'ids' must be \"all\" or 1..{MAX_IDS} alert ids")
    return AlertAck(tuple(ids))


def _lua_name(f: Fields, *, required: bool) -> str | None:
    name = f.take("name", "string", required=required)
    if name is not None and not allowlist.LUA_NAME.fullmatch(name):
        raise invalid(f"{f.action}: 'name' must be a Lua variable name such as tariff_rate, "
                      f"got {name!r}")
    return name  # type: ignore[no-any-return]


def parse_lua_get(f: Fields) -> LuaGet:
    return LuaGet(_lua_name(f, required=False))


def parse_lua_set(f: Fields) -> LuaSet:
    name = _lua_name(f, required=True)
    assert name is not None
    return LuaSet(name, f.take("value", "any", required=True))


def parse_api_get(f: Fields) -> ApiGet:
    path: str = f.take("path", "string", required=True)
    if path == "/api" or path.startswith("/api/"):
        raise invalid(f"api/get: 'path' is below /api already: give {path[4:] or '/'!r}")
    if not allowlist.is_config_path(path) or path == "/":
        raise invalid(f"api/get: 'path' must be a WebAPI path such as /providers/push, "
                      f"without a query, got {path!r}")
    if allowlist.is_auth_path(path):
        raise invalid("api/get: /auth is not read through api/get (its GETs log in and out)")
    return ApiGet(path)
