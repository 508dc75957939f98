"""CommandRouter: requests from MQTT (or Modbus) to a meter's /cmd, /ctrl and /config.

One router serves every meter. :meth:`CommandRouter.handle` takes a :class:`CommandRequest`
and returns exactly one :class:`CommandResponse`; ``None`` only for a retained request and
for a zero-length payload (how MQTT clears a retained message), which are never executed nor
answered. Steps, each of which can end the request with an error code:

1. decode: size limit, JSON object, ``transaction`` and ``dry_run`` types (``invalid``);
2. duplicates: a transaction seen within the window gets the first answer again;
3. action and fields (``unknown_action``, ``invalid``), then the meter's policy
   (``not_allowed``);
4. the meter's availability (``offline``), queue and rate limit (``busy``), reboot cool-down
   (``cooldown``);
5. one command at a time per meter, every call under the meter's lane (shared with the
   poller), the whole within ``commands.timeout_s`` (``timeout``); meter failures become
   ``offline``, ``conflict`` or ``meter_error``.

Every request ends in one structlog ``command`` event and one call of each audit sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from gateway.actions import Action, MeterApi, Planned, Session, parse_action
from gateway.config import CommandPolicy
from gateway.errors import (
    CommandError,
    ConfigConflict,
    GatewayError,
    MeterError,
    MeterReportedError,
    MeterTimeout,
    MeterUnavailable,
)
from gateway.policy import Envelope, Policy, Transaction, decode_envelope, shown_request

log = structlog.get_logger(__name__)

AuditSink = Callable[[Mapping[str, Any]], Awaitable[None] | None]
_RETRYABLE: Final = frozenset({"busy", "offline", "cooldown", "timeout"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Router limits that are not per-meter configuration."""

    max_payload: int = 16 * 1024  # bytes
    max_depth: int = 32  # nesting of JSON arrays/objects
    queue: int = 8  # commands per meter admitted and not yet finished
    rate: int = 30  # commands per meter ...
    rate_window_s: float = 60.0  # ... within this many seconds
    dedup_window_s: float = 600.0  # how long a transaction's answer is remembered
    dedup_size: int = 1024  # how many answers are remembered at most


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One request as a transport received it. ``client`` describes the sender (e.g. the
    MQTT topic or a Modbus peer) for the audit trail."""

    meter: str
    action: str
    payload: bytes
    retained: bool = False
    source: str = "mqtt"
    client: str = ""

    @classmethod
    def build(cls, meter: str, action: str, fields: Mapping[str, Any], *,
              source: str = "modbus", client: str = "") -> CommandRequest:
        """A request made by code (e.g. a Modbus write turned into a ``relay`` request)."""
        return cls(meter, action, json.dumps(dict(fields)).encode(), False, source, client)


@dataclass(frozen=True, slots=True)
class CommandResponse:
    """The one answer to a request; ``code`` is None when ``status`` is "ok"."""

    meter: str
    action: str
    status: str
    data: Any = None
    error: str | None = None
    transaction: Transaction | None = None
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "data": self.data, "error": self.error,
                "code": self.code, "transaction": self.transaction,
                "meter": self.meter, "action": self.action}

    def encode(self) -> bytes:
        return json.dumps(self.as_json(), separators=(",", ":"), default=str).encode()


@dataclass(slots=True)
class _MeterState:
    """The router's state for one meter."""

    client: MeterApi
    lane: asyncio.Lock
    policy: Policy
    settings: CommandPolicy
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one command at a time
    pending: int = 0
    admitted: deque[float] = field(default_factory=deque)
    last_reboot: float | None = None


@dataclass(slots=True)
class _Remembered:
    expires: float
    fingerprint: str
    answer: asyncio.Future[CommandResponse]


class CommandRouter:
    """Checks, executes and answers command requests for every configured meter."""

    def __init__(
        self,
        clients: Mapping[str, MeterApi],
        policies: Mapping[str, CommandPolicy],
        lanes: Mapping[str, asyncio.Lock],
        *,
        is_online: Callable[[str], bool],
        audit: AuditSink | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._meters = {
            meter: _MeterState(client, lanes[meter], Policy(policies[meter].allow), policies[meter])
            for meter, client in clients.items()
        }
        self._is_online = is_online
        self._audit: list[AuditSink] = [] if audit is None else [audit]
        self.limits = limits or Limits()
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str, Transaction], _Remembered] = OrderedDict()

    @property
    def meters(self) -> tuple[str, ...]:
        return tuple(self._meters)

    def add_audit(self, sink: AuditSink) -> None:
        """Hand every audit event to ``sink`` too (e.g. MQTT's ``bridge/audit`` publisher, the
        Modbus output's relay states); each sink's failure is only logged."""
        self._audit.append(sink)

    def set_meters(self, clients: Mapping[str, MeterApi], policies: Mapping[str, CommandPolicy],
                   lanes: Mapping[str, asyncio.Lock]) -> None:
        """Serve another meter set (a configuration reload). A meter that stays keeps its
        queue, rate window and reboot cool-down, with its new client, lane and policy."""
        meters: dict[str, _MeterState] = {}
        for meter, client in clients.items():
            settings = policies[meter]
            state = self._meters.get(meter)
            if state is None:
                state = _MeterState(client, lanes[meter], Policy(settings.allow), settings)
            else:  # updated in place: commands still running hold this object
                state.client, state.lane = client, lanes[meter]
                state.policy, state.settings = Policy(settings.allow), settings
            meters[meter] = state
        self._meters = meters

    async def handle(self, request: CommandRequest) -> CommandResponse | None:
        """The one answer to ``request`` (None for a retained or empty one); never raises."""
        started = self._clock()
        envelope: Envelope | None = None
        if request.retained or not request.payload:
            with contextlib.suppress(CommandError):
                envelope = self._decode(request)
            note = "retained" if request.retained else "empty"
            await self._record(request, envelope, None, started, note=note)
            return None
        note = ""
        try:
            envelope = self._decode(request)
            if envelope.transaction is None:
                response = await self._execute(request, envelope)
            else:
                response, note = await self._once(request, envelope)
        except CommandError as exc:
            response = self._answer(request, envelope, code=exc.code, error=exc.message)
        await self._record(request, envelope, response, started, note=note)
        return response

    # -- steps ------------------------------------------------------------------------------

    def _decode(self, request: CommandRequest) -> Envelope:
        return decode_envelope(request.payload, max_bytes=self.limits.max_payload,
                               max_depth=self.limits.max_depth)

    async def _once(self, request: CommandRequest, envelope: Envelope
                    ) -> tuple[CommandResponse, str]:
        """Run a request with a transaction at most once within the dedup window."""
        assert envelope.transaction is not None
        key = (request.source, request.meter, envelope.transaction)
        fingerprint = request.action + " " + json.dumps(envelope.body, sort_keys=True)
        now = self._clock()
        self._expire(now)
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            if seen.fingerprint != fingerprint:
                raise CommandError("invalid", f"transaction {envelope.transaction!r} was "
                                              "already used for a different request")
            try:
                return await asyncio.shield(seen.answer), "duplicate"
            except asyncio.CancelledError:
                if not seen.answer.cancelled() or _cancelling():
                    raise
                raise CommandError("timeout", "the first request with this transaction was "
                                              "cancelled before it finished") from None
        answer: asyncio.Future[CommandResponse] = asyncio.get_running_loop().create_future()
        remembered = _Remembered(now + self.limits.dedup_window_s, fingerprint, answer)
        self._seen[key] = remembered
        while len(self._seen) > self.limits.dedup_size:
            self._seen.popitem(last=False)
        session_box: list[Session] = []
        try:
            try:
                response = await self._execute(request, envelope, session_box)
            except CommandError as exc:
                response = self._answer(request, envelope, code=exc.code, error=exc.message)
            answer.set_result(response)
        finally:
            if not answer.done():
                answer.cancel()
            attempted = bool(session_box) and session_box[0].attempted
            retry = answer.cancelled() or (response.code in _RETRYABLE and not attempted)
            if retry and self._seen.get(key) is remembered:
                del self._seen[key]
        return response, ""

    def _expire(self, now: float) -> None:
        while self._seen:
            key, oldest = next(iter(self._seen.items()))
            if oldest.expires > now and len(self._seen) <= self.limits.dedup_size:
                break
            del self._seen[key]

    async def _execute(self, request: CommandRequest, envelope: Envelope,
                       session_box: list[Session] | None = None) -> CommandResponse:
        lane = self._meters.get(request.meter)
        if lane is None:
            raise CommandError("invalid", f"unknown meter {request.meter!r}")
        action = parse_action(request.action, envelope.fields())
        if not lane.policy.allows(action.need):
            raise CommandError("not_allowed", f"{request.action} is not allowed on meter "
                                              f"{request.meter} (needs {action.need!s} in "
                                              "commands.allow)")
        if not self._is_online(request.meter):
            raise CommandError("offline", f"meter {request.meter} is offline; nothing was sent")
        self._check_cooldown(lane, action)
        self._admit(request.meter, lane)
        session = Session(lane.client, lane.lane, dry_run=envelope.dry_run)
        if session_box is not None:
            session_box.append(session)
        holds_reboot = action.reboots and not envelope.dry_run
        previous_reboot = lane.last_reboot
        if holds_reboot:
            lane.last_reboot = self._clock()
        lane.pending += 1
        try:
            data = await self._run(request.meter, lane, action, session)
        except Planned as planned:
            data = {"dry_run": True, "call": planned.call.as_json()}
        finally:
            lane.pending -= 1
            if holds_reboot and not session.attempted:
                lane.last_reboot = previous_reboot
        return self._answer(request, envelope, data=data)

    def _admit(self, meter: str, lane: _MeterState) -> None:
        now = self._clock()
        if lane.pending >= self.limits.queue:
            raise CommandError("busy", f"meter {meter} already has {lane.pending} commands "
                                       "waiting; try again later")
        while lane.admitted and lane.admitted[0] <= now - self.limits.rate_window_s:
            lane.admitted.popleft()
        if len(lane.admitted) >= self.limits.rate:
            wait = lane.admitted[0] + self.limits.rate_window_s - now
            raise CommandError("busy", f"rate limit of {self.limits.rate} commands per "
                                       f"{self.limits.rate_window_s:g} s reached for meter "
                                       f"{meter}; try again in {wait:.0f} s")
        lane.admitted.append(now)

    def _check_cooldown(self, lane: _MeterState, action: Action) -> None:
        cooldown = lane.settings.reboot_cooldown_s
        if not action.reboots or lane.last_reboot is None:
            return
        since = self._clock() - lane.last_reboot
        if since < cooldown:
            raise CommandError("cooldown", f"the meter was rebooted less than {cooldown:g} s "
                                           f"ago; try again in {cooldown - since:.0f} s")

    async def _run(self, meter: str, lane: _MeterState, action: Action, session: Session) -> Any:
        timeout = lane.settings.timeout_s
        try:
            async with asyncio.timeout(timeout):
                async with lane.turn:
                    return await action.run(session)
        except TimeoutError:
            hint = "; the meter may still carry it out" if session.attempted else ""
            raise CommandError("timeout", f"no result within {timeout:g} s{hint}") from None
        except (CommandError, Planned):
            raise
        except MeterTimeout as exc:
            raise CommandError("timeout", exc.message) from None
        except MeterUnavailable as exc:
            raise CommandError("offline", exc.message) from None
        except MeterReportedError as exc:
            code = "conflict" if isinstance(exc, ConfigConflict) else "meter_error"
            raise CommandError(code, exc.message) from None
        except (MeterError, GatewayError) as exc:
            raise CommandError("meter_error", str(exc)) from None
        except Exception as exc:
            log.exception("command_failed", meter=meter)
            raise CommandError("internal_error", f"{type(exc).__name__}") from None

    # -- answers and audit ------------------------------------------------------------------

    def _answer(self, request: CommandRequest, envelope: Envelope | None, *,
                data: Any = None, code: str | None = None, error: str | None = None
                ) -> CommandResponse:
        transaction = envelope.transaction if envelope else None
        status = "ok" if code is None else "error"
        return CommandResponse(request.meter, request.action, status, data, error,
                               transaction, code)

    async def _record(self, request: CommandRequest, envelope: Envelope | None,
                      response: CommandResponse | None, started: float, *, note: str) -> None:
        event = audit_event(request, envelope, response, self._clock() - started, note)
        log.info("command", **event)
        for sink in self._audit:
            try:
                result = sink(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # an audit sink must not change the answer
                log.warning("command_audit_failed", meter=request.meter, error=_short(exc))


def audit_event(request: CommandRequest, envelope: Envelope | None,
                response: CommandResponse | None, duration_s: float, note: str
                ) -> dict[str, Any]:
    """The audit record of one request: who asked what and how it ended (no secrets)."""
    outcome = "ignored" if response is None else response.code or "ok"
    event: dict[str, Any] = {
        "meter": request.meter, "action": request.action, "source": request.source,
        "client": request.client,
        "transaction": envelope.transaction if envelope else None,
        "outcome": outcome, "duration_s": round(duration_s, 4),
        "dry_run": envelope.dry_run if envelope else False,
    }
    if note:
        event["note"] = note
    if response is not None and response.error:
        event["error"] = response.error
    if envelope is not None:
        event["request"] = shown_request(envelope.body)
    return event



def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
