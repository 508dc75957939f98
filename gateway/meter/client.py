"""WebApiClient: the eGauge WebAPI of one meter over one HTTP channel (its own connection pool).

Requests carry the session's bearer token; a 401 is answered by one shared re-login
(using the fresh realm/nonce in the 401 body) and one retry. Register metadata is cached:
``read()`` checks each reply against it cheaply and, when the meter's register set changed,
refreshes the cache and counts the change in ``register_set_changed``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import structlog

from gateway.config import MeterConfig
from gateway.errors import AuthError, CommandError
from gateway.meter.auth import LoginBackoff, Session, parse_challenge
from gateway.meter.channel import (
    MAX_HISTORY_BYTES,
    MAX_REPLY_BYTES,
    NO_BODY,
    Channel,
    Reply,
    TlsContexts,
)
from gateway.meter.fields import Fields
from gateway.meter.recent import RecentRows
from gateway.meter.registers import (
    RegisterKey,
    RegisterPlan,
    first_row,
    history_rows,
    parse_infos,
    register_keys,
)
from gateway.meter.sysinfo import parse_identity, parse_local
from gateway.model import Identity, LocalValue, Reading, RegisterInfo, RegisterValue
from gateway.secret import Secret

log = structlog.get_logger(__name__)

# the newest stored row and the one before it: a poll that comes a little late (and skips a
# meter second) still brings that second's row, for the energy counters and the history
_READ_QUERY = "rate&time=now-1:1:now&virtual=value"
_IDENTITY_FILTER = quote("{sn,model,version,uptime}", safe="")


class WebApiClient:
    """One meter's WebAPI: identity, registers, local sensors, history, config, cmd, ctrl."""

    def __init__(
        self,
        meter_id: str,
        url: str,
        username: str,
        password: Secret,
        *,
        verify_tls: bool | str = True,
        timeout_s: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        login_backoff: LoginBackoff | None = None,
        tls: TlsContexts | None = None,
    ) -> None:
        """``tls`` shares SSL contexts between the clients of a fleet."""
        self.meter_id = meter_id
        self._clock = clock
        self._channel = Channel(
            meter_id, url, verify_tls=verify_tls, timeout_s=timeout_s, transport=transport,
            tls=tls,
        )
        self._session = Session(
            self._channel, username, password, clock=clock, backoff=login_backoff
        )
        self._f = Fields(meter_id)
        self._infos: tuple[RegisterInfo, ...] | None = None
        self._known_keys: tuple[RegisterKey, ...] | None = None
        self._selection: tuple[tuple[str, ...], str] | None = None  # names -> reg= query
        self._plan: RegisterPlan | None = None
        self._recent = RecentRows()
        self.register_set_changed = 0
        # (token generation, requests the meter refused even with that fresh token)
        self._denied: tuple[int, set[tuple[str, str]]] = (0, set())

    @classmethod
    def from_config(cls, cfg: MeterConfig, **kw: Any) -> WebApiClient:
        return cls(
            cfg.id, cfg.url, cfg.username, cfg.password,
            verify_tls=cfg.verify_tls, timeout_s=cfg.timeout_s, **kw,
        )

    @property
    def url(self) -> str:
        """The WebAPI base URL (``.../api``)."""
        return self._channel.api

    @property
    def logins(self) -> int:
        """How many successful logins this client performed."""
        return self._session.logins

    @property
    def channel_renewals(self) -> int:
        """How many times the connection pool was replaced after a cancelled request."""
        return self._channel.renewals

    @property
    def login_failures(self) -> int:
        """How many logins the meter refused."""
        return self._session.login_failures

    def __repr__(self) -> str:
        return f"WebApiClient({self.meter_id!r}, {self._channel.api!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Log out (best effort) and close the connection pool."""
        try:
            await self._session.logout()
        finally:
            await self._channel.aclose()

    # -- requests ---------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        query: str = "",
        *,
        body: Any = NO_BODY,
        headers: dict[str, str] | None = None,
        max_bytes: int = MAX_REPLY_BYTES,
        deadline: bool = True,
    ) -> Reply:
        """Send with the current token; on 401 re-login once (shared) and retry once."""
        token = await self._session.current()
        send = self._channel.send
        response = await send(method, path, query, body=body, bearer=token.bearer, headers=headers,
                              max_bytes=max_bytes, deadline=deadline)
        if response.status_code != 401:
            return response
        denied = self._denied
        if denied[0] == token.generation and (method, path) in denied[1]:
            raise AuthError(self.meter_id, f"{method} {path}: not permitted for this user")
        token = await self._session.replace(token, parse_challenge(response))
        response = await send(method, path, query, body=body, bearer=token.bearer, headers=headers,
                              max_bytes=max_bytes, deadline=deadline)
        if response.status_code == 401:
            # a fresh token refused: a missing privilege; no new login for this path until
            # the token changes
            if self._denied[0] != token.generation:
                self._denied = (token.generation, set())
            self._denied[1].add((method, path))
            raise AuthError(
                self.meter_id,
                f"{method} {path}: the meter refused a fresh token (missing privilege?)",
            )
        return response

    async def _call(
        self, method: str, path: str, query: str = "", *, body: Any = NO_BODY,
        headers: dict[str, str] | None = None, max_bytes: int = MAX_REPLY_BYTES,
        deadline: bool = True,
    ) -> tuple[Any, Reply]:
        response = await self._request(method, path, query, body=body, headers=headers,
                                       max_bytes=max_bytes, deadline=deadline)
        return self._channel.decode(response, f"{method} {path}"), response

    async def _object(self, method: str, path: str, query: str = "", **kw: Any) -> dict[str, Any]:
        value, _ = await self._call(method, path, query, **kw)
        return self._f.obj(value, "body")

    # -- identity and registers -------------------------------------------------------------

    async def identity(self) -> Identity:
        """Serial, model, firmware, uptime (one ``/sys`` call) and the hostname."""
        sys_reply = await self._object("GET", "/sys", "filter=" + _IDENTITY_FILTER)
        net_reply = await self._object("GET", "/config/net/hostname")
        return parse_identity(self._f, sys_reply, net_reply)

    async def register_info(self, *, refresh: bool = False) -> tuple[RegisterInfo, ...]:
        """Every register's metadata (``/register?virtual=formula``), cached until the
        register set changes (see ``register_set_changed``) or ``refresh`` is asked for."""
        if self._infos is not None and not refresh:
            return self._infos
        reply = await self._object("GET", "/register", "virtual=formula")
        infos = parse_infos(self._f, self._f.array(reply.get("registers"), "registers"))
        self._note_register_set(register_keys(infos))
        self._infos = infos
        return infos

    async def read(self, names: Sequence[str] | None = None) -> Reading:
        """The current rate and cumulative value of every (or each named) register."""
        selection = None if names is None else tuple(names)
        reply, entries, plan = await self._fetch(selection, recheck=True)
        if plan is None:  # the register set moved under a named selection
            self._selection = None
            await self.register_info(refresh=True)
            reply, entries, plan = await self._fetch(selection, recheck=False)
            assert plan is not None
        ts = self._f.stamp(reply.get("ts"), "ts")
        row_ts, row = first_row(self._f, reply)
        values = plan.values(self._f, entries, row, "ranges[0].rows[0]")
        second = math.floor(row_ts) if math.isfinite(row_ts) else None
        if selection is None and second is not None:
            self._remember_poll_rows(reply, plan, second, values)
        return Reading(self.meter_id, ts, values, received=self._clock(), row=second)

    def _remember_poll_rows(self, reply: dict[str, Any], plan: RegisterPlan, second: int,
                            values: Sequence[RegisterValue]) -> None:
        """The poll's stored rows (the newest and, when the meter sent it, the one before)
        for :class:`RecentRows` -- only for a poll of every register, so that an answer
        from them holds what the meter's own would."""
        newest = {v.name: v.raw for v in values if v.raw is not None}
        rows: list[tuple[float, dict[str, int]]] = [(float(second), newest)]
        first = reply["ranges"][0]
        older = first.get("rows")
        if first.get("delta") == 1 and type(older) is list and len(older) > 1:
            rows.insert(0, (float(second - 1),
                            plan.raws(self._f, older[1], "ranges[0].rows[1]")))
        self._recent.remember(rows, self._session.logins)

    async def _fetch(
        self, names: tuple[str, ...] | None, *, recheck: bool
    ) -> tuple[dict[str, Any], list[Any], RegisterPlan | None]:
        """One ``time=now`` reply and the plan for it (None: refresh the selection first)."""
        query = _READ_QUERY
        if names is not None:
            query += "&reg=" + await self._reg_selection(names)
        reply = await self._object("GET", "/register", query)
        entries = self._f.array(reply.get("registers"), "registers")
        plan = self._plan
        if plan is None or not plan.matches(entries):
            plan = RegisterPlan(self._f, entries)
            if names is None:
                self._note_register_set(plan.keys)
            elif recheck and self._selection_changed(plan):
                return reply, entries, None
            self._plan = plan
        return reply, entries, plan

    async def _reg_selection(self, names: tuple[str, ...]) -> str:
        if self._selection is not None and self._selection[0] == names:
            return self._selection[1]
        infos = await self.register_info()
        by_name = {info.name: info.idx for info in infos}
        missing = [n for n in names if n not in by_name]
        if missing:
            log.warning("meter_registers_missing", meter=self.meter_id, names=missing)
        wanted = sorted({by_name[n] for n in names if n in by_name})
        # "+" joins idx ranges; sent percent-encoded so no form decoder reads it as a space
        selection = "%2B".join(str(i) for i in wanted) if wanted else "none"
        self._selection = (names, selection)
        return selection

    def _selection_changed(self, plan: RegisterPlan) -> bool:
        """Whether a reply to a named selection lists other registers than the cache says."""
        if self._infos is None or self._selection is None:
            return False
        wanted = set(self._selection[0])
        expected = register_keys([i for i in self._infos if i.name in wanted])
        return plan.keys != expected

    def _note_register_set(self, keys: tuple[RegisterKey, ...]) -> None:
        if self._known_keys is not None and keys != self._known_keys:
            self.register_set_changed += 1
            self._infos = None
            self._selection = None
            self._plan = None
            log.info(
                "meter_registers_changed", meter=self.meter_id, registers=len(keys),
                changes=self.register_set_changed,
            )
        self._known_keys = keys

    async def local(self) -> tuple[LocalValue, ...]:
        """The ``values`` section of ``/local``: every sensor's normal, mean and frequency."""
        reply = await self._object("GET", "/local", "values&rate&type")
        return parse_local(self._f, reply)

    async def history(
        self, start: float, step: float, end: float, max_rows: int | None = None
    ) -> list[tuple[float, dict[str, int]]]:
        """Stored rows between ``start`` and ``end``, oldest first, as ``(ts, {name: raw})``.
        The reply may be larger than others (:data:`MAX_HISTORY_BYTES`); its time limit is
        the caller's (the backfill's slot before the next poll), each phase within
        ``timeout_s``. Rows of 1-second requests that another part read a moment ago are
        answered from :class:`~gateway.meter.recent.RecentRows` (treat rows as read-only)."""
        fine = step == 1
        if fine:
            kept = self._recent.lookup(start, end, max_rows, self._session.logins)
            if kept is not None:
                return kept
        query = f"time={_num(start)}:{_num(step)}:{_num(end)}&virtual=value"
        if max_rows is not None:
            query += f"&max-rows={int(max_rows)}"
        reply = await self._object("GET", "/register", query, max_bytes=MAX_HISTORY_BYTES,
                                   deadline=False)
        rows = history_rows(self._f, reply)
        if fine:
            self._recent.remember(rows, self._session.logins)
        return rows

    # -- configuration, commands, control --------------------------------------------------

    async def get_config(self, path: str) -> tuple[Any, str | None]:
        """The value at ``/config<path>`` and the ETag of the configuration it came from."""
        reply, response = await self._call("GET", "/config" + _config_path(path))
        obj = self._f.obj(reply, "body")
        if "result" not in obj:
            raise self._f.error("result", "expected the value at the path, got nothing")
        return obj["result"], response.headers.get("ETag")

    async def set_config(
        self, path: str, value: Any, *, etag: str | None, merge: bool = False
    ) -> None:
        """PUT (replace) or POST (merge/append) ``value`` at ``path``, with If-Match."""
        headers = {"If-Match": etag} if etag else None
        method = "POST" if merge else "PUT"
        await self._object(method, "/config" + _config_path(path), body=value, headers=headers)

    async def cmd(self, name: str, body: Any = None) -> Any:
        """``POST /cmd/<name>``; returns the meter's reply (e.g. ``{"status": "OK"}``)."""
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise CommandError("invalid", f"bad command name {name!r}")
        value, _ = await self._call(
            "POST", "/cmd/" + name, body=NO_BODY if body is None else body
        )
        return value

    async def ctrl_devices(self, attrs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """``GET /ctrl/device``, filtered by ``attrs`` when given."""
        query = ""
        if attrs:
            query = "attrs=" + quote(json.dumps(dict(attrs), separators=(",", ":")), safe="")
        reply = await self._object("GET", "/ctrl/device", query)
        devices = self._f.array(reply.get("result"), "result")
        return [self._f.obj(d, f"result[{i}]") for i, d in enumerate(devices)]

    async def ctrl_call(self, attrs: Mapping[str, Any], method: str, args: Sequence[Any]) -> int:
        """``POST /ctrl/call``; returns the transaction id to poll with :meth:`ctrl_result`."""
        body = {"attrs": dict(attrs), "method": method, "args": list(args)}
        reply = await self._object("POST", "/ctrl/call", body=body)
        result = self._f.obj(reply.get("result"), "result")
        return self._f.integer(result.get("tid"), "result.tid")

    async def ctrl_result(self, tid: int) -> Any:
        """The return value of a ``/ctrl`` call; raises CallPending while it runs."""
        reply = await self._object("GET", f"/ctrl/call/{int(tid)}")
        return reply.get("result")

    # -- the other services ----------------------------------------------------------------

    async def fetch(self, method: str, path: str, query: str = "", body: Any = None) -> Any:
        """One request to ``/api<path>?<query>`` (``body`` sent as JSON; None: no body) and
        its decoded reply; an ``error`` member raises ``MeterReportedError``. ``path`` is
        absolute, its segments without ``.``/``..``, ``?``, ``#`` or whitespace, each sent
        percent-encoded; ``query`` is sent as it is."""
        value, _ = await self._call(method, _api_path(path), query,
                                    body=NO_BODY if body is None else body)
        return value


def _config_path(path: str) -> str:
    """``/net/hostname`` -> the URL path below /config, each segment percent-encoded."""
    if path in ("", "/"):
        return ""
    segments = path.strip("/").split("/")
    if not path.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise CommandError("invalid", f"bad configuration path {path!r}")
    return "/" + "/".join(quote(s, safe="") for s in segments)


def _api_path(path: str) -> str:
    """An absolute WebAPI path (below ``/api``), each segment percent-encoded."""
    segments = path[1:].split("/")
    if not path.startswith("/") or any(
            s in ("", ".", "..") or any(c in s for c in "?#") or not s.isprintable()
            or any(c.isspace() for c in s) for s in segments):
        raise CommandError("invalid", f"bad WebAPI path {path!r}")
    return "/" + "/".join(quote(s, safe="") for s in segments)


def _num(x: float) -> str:
    """A number for a time expression: integers without a fraction."""
    value = float(x)
    return str(int(value)) if value.is_integer() else repr(value)
