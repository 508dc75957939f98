"""CommandRouter: requests from MQTT (or Modbus) to a meter's /cmd, /ctrl and /config.

One router serves every meter. :meth:`CommandRouter.handle` takes the raw bytes of a
:class:`CommandRequest` and returns exactly one :class:`CommandResponse`; ``None`` only for a
retained request and for a zero-length payload (how MQTT clears a retained message), which are
never executed nor answered. :meth:`CommandRouter.submit` takes a :class:`Command` that code
built itself (Modbus writes). Steps, each of which can end the request with an error code
(:class:`~gateway.errors.ErrorCode`):

1. decode: size limit, JSON object, nesting, valid Unicode, ``transaction`` and ``dry_run``
   types (``invalid``);
2. the meter: an unknown one is ``invalid`` before anything is remembered for it; then
   duplicates: a transaction seen within the window gets the first answer again;
3. action and fields (``unknown_action``, ``invalid``), then the meter's policy
   (``not_allowed``);
4. the meter's availability (``offline``), queue and rate limit (``busy``), the cool-down of
   a disruptive action (reboots; CTid scans and flashes) (``cooldown``);
5. one command at a time per meter, every call under the meter's lane (shared with the
   poller), the whole within ``commands.timeout_s`` plus the time the request itself asks
   the meter to take (``Action.wait_s``: a capture's duration and trigger timeout, a CTid
   scan's timeout) (``timeout``); meter failures become ``offline``, ``conflict`` or
   ``meter_error``.

:meth:`CommandRouter.refuse` answers a request at once without serving it (a transport's
full inbox). Answers are shown as they may be published: secret-looking members of ``data``
and tokens in ``error`` masked (:mod:`gateway.secret`). Every request ends in one structlog
``command`` event, one call of each audit sink (a JSON
object, :mod:`gateway.commands.audit`) and, once decoded, one call of each outcome listener
(a typed :class:`Outcome`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from gateway.commands.actions import Action, Planned, Session, parse_action
from gateway.commands.audit import Addressed, AuditSink, AuditTrail, audit_event
from gateway.commands.envelope import Envelope, Transaction, decode_envelope
from gateway.commands.limits import Limits
from gateway.commands.policy import Policy
from gateway.commands.redaction import mask, mask_text
from gateway.commands.request import Command, CommandRequest, CommandResponse, Outcome
from gateway.config import CommandPolicy
from gateway.errors import (
    CommandError,
    ConfigConflict,
    ErrorCode,
    GatewayError,
    MeterError,
    MeterReportedError,
    MeterTimeout,
    MeterUnavailable,
)
from gateway.meter import MeterClient

log = structlog.get_logger(__name__)

OutcomeListener = Callable[[Outcome], None]
_RETRYABLE: Final = frozenset({ErrorCode.BUSY, ErrorCode.OFFLINE, ErrorCode.COOLDOWN,
                               ErrorCode.TIMEOUT})


@dataclass(slots=True)
class _MeterState:
    """The router's state for one meter."""

    client: MeterClient
    lane: asyncio.Lock
    policy: Policy
    settings: CommandPolicy
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one command at a time
    pending: int = 0
    admitted: deque[float] = field(default_factory=deque)
    last_disruption: dict[str, float] = field(default_factory=dict)  # cool-down kind -> when


@dataclass(slots=True)
class _Remembered:
    expires: float
    fingerprint: str
    answer: asyncio.Future[CommandResponse]


class CommandRouter:
    """Checks, executes and answers command requests for every configured meter."""

    def __init__(
        self,
        clients: Mapping[str, MeterClient],
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
        self._audit = AuditTrail([] if audit is None else [audit])
        self._listeners: list[OutcomeListener] = []
        self._running = 0  # requests being served now
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.limits = limits or Limits()
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str, Transaction], _Remembered] = OrderedDict()

    @property
    def meters(self) -> tuple[str, ...]:
        return tuple(self._meters)

    def add_audit(self, sink: AuditSink) -> None:
        """Hand every audit event to ``sink`` too (e.g. MQTT's ``bridge/audit`` publisher, the
        Modbus output's relay states); each sink's failure is only logged."""
        self._audit.add(sink)

    def on_outcome(self, listener: OutcomeListener) -> None:
        """Call ``listener`` with every decoded request and its answer (e.g. the Modbus
        output follows relays switched from MQTT); a listener must not block."""
        self._listeners.append(listener)

    def set_meters(self, clients: Mapping[str, MeterClient], policies: Mapping[str, CommandPolicy],
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
        """The one answer to raw ``request`` (None for a retained or empty one); never raises."""
        started = self._clock()
        if request.retained or not request.payload:
            envelope: Envelope | None = None
            with contextlib.suppress(CommandError):
                envelope = self._decode(request)
            note = "retained" if request.retained else "empty"
            await self._record(request, envelope, None, started, note=note)
            return None
        try:
            envelope = self._decode(request)
        except CommandError as exc:
            response = _answer(request, None, code=exc.code, error=exc.message)
            await self._record(request, None, response, started, note="")
            return response
        command = Command(request.meter, request.action, envelope, request.source,
                          request.client, request.notes)
        return await self._serve(command, started)

    def refuse(self, request: CommandRequest, code: ErrorCode, error: str
               ) -> CommandResponse | None:
        """Answer ``request`` at once with ``code`` without serving it (a transport whose
        inbox is full answers ``busy`` so); like :meth:`handle`, ``None`` for a retained or
        empty request, which is ignored. The payload is decoded only to echo its
        transaction. Audited and logged like every request, synchronously; an audit sink that
        returns an awaitable has it awaited by the next request served (or :meth:`drain`)."""
        started = self._clock()
        envelope: Envelope | None = None
        with contextlib.suppress(CommandError):
            envelope = self._decode(request)
        response: CommandResponse | None = None
        note = ""
        if request.retained or not request.payload:
            note = "retained" if request.retained else "empty"
        else:
            response = _answer(request, envelope, code=code, error=error)
        self._audit.record_now(audit_event(request, envelope, response,
                                           self._clock() - started, note))
        return response

    async def submit(self, command: Command) -> CommandResponse:
        """The one answer to a request that code built; never raises."""
        return await self._serve(command, self._clock())

    async def drain(self) -> None:
        """Refuse new requests (``busy``: the gateway is stopping) and wait until the ones
        being served have their answers (the app bounds the wait by its shutdown timeout)."""
        self._closing = True
        await self._idle.wait()
        await self._audit.settle()

    async def _serve(self, command: Command, started: float) -> CommandResponse:
        note = ""
        self._running += 1
        self._idle.clear()
        try:
            if self._closing:
                raise CommandError(ErrorCode.BUSY, "the gateway is stopping; nothing was sent")
            if command.meter not in self._meters:  # before the duplicates: nothing is kept
                raise CommandError(ErrorCode.INVALID, f"unknown meter {command.meter!r}")
            if command.envelope.transaction is None:
                response = await self._execute(command)
            else:
                response, note = await self._once(command)
        except CommandError as exc:
            response = _answer(command, command.envelope, code=exc.code, error=exc.message)
        finally:
            self._running -= 1
            if not self._running:
                self._idle.set()
        await self._record(command, command.envelope, response, started, note=note)
        outcome = Outcome(command, response)
        for listener in self._listeners:
            try:
                listener(outcome)
            except Exception as exc:  # a listener must not change the answer
                log.warning("command_listener_failed", meter=command.meter, error=_short(exc))
        return response

    # -- steps ------------------------------------------------------------------------------

    def _decode(self, request: CommandRequest) -> Envelope:
        return decode_envelope(request.payload, max_bytes=self.limits.max_payload,
                               max_depth=self.limits.max_depth)

    async def _once(self, command: Command) -> tuple[CommandResponse, str]:
        """Run a request with a transaction at most once within the dedup window."""
        envelope = command.envelope
        assert envelope.transaction is not None
        key = (command.source, command.meter, envelope.transaction)
        fingerprint = command.action + " " + json.dumps(envelope.body, sort_keys=True)
        now = self._clock()
        self._expire(now)
        seen = self._seen.get(key)
        if seen is not None:
            self._seen.move_to_end(key)
            if seen.fingerprint != fingerprint:
                raise CommandError(ErrorCode.INVALID, f"transaction {envelope.transaction!r} "
                                   "was already used for a different request")
            try:
                return await asyncio.shield(seen.answer), "duplicate"
            except asyncio.CancelledError:
                if not seen.answer.cancelled() or _cancelling():
                    raise
                raise CommandError(ErrorCode.TIMEOUT, "the first request with this "
                                   "transaction was cancelled before it finished") from None
        answer: asyncio.Future[CommandResponse] = asyncio.get_running_loop().create_future()
        remembered = _Remembered(now + self.limits.dedup_window_s, fingerprint, answer)
        self._seen[key] = remembered
        while len(self._seen) > self.limits.dedup_size:
            self._seen.popitem(last=False)
        session_box: list[Session] = []
        try:
            try:
                response = await self._execute(command, session_box)
            except CommandError as exc:
                response = _answer(command, envelope, code=exc.code, error=exc.message)
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

    async def _execute(self, command: Command, session_box: list[Session] | None = None
                       ) -> CommandResponse:
        meter, envelope = command.meter, command.envelope
        lane = self._meters.get(meter)
        if lane is None:
            raise CommandError(ErrorCode.INVALID, f"unknown meter {meter!r}")
        action = parse_action(command.action, envelope.fields())
        if not lane.policy.allows(action.need):
            raise CommandError(ErrorCode.NOT_ALLOWED, f"{command.action} is not allowed on "
                               f"meter {meter} (needs {action.need!s} in commands.allow)")
        if not self._is_online(meter):
            raise CommandError(ErrorCode.OFFLINE, f"meter {meter} is offline; nothing was sent")
        self._check_cooldown(lane, action)
        self._admit(meter, lane)
        session = Session(lane.client, lane.lane, dry_run=envelope.dry_run, meter=meter)
        if session_box is not None:
            session_box.append(session)
        kind = action.cooldown
        holds_cooldown = bool(kind) and not envelope.dry_run
        previous = lane.last_disruption.get(kind)
        if holds_cooldown:
            lane.last_disruption[kind] = self._clock()
        lane.pending += 1
        try:
            data = await self._run(meter, lane, action, session)
        except Planned as planned:
            data = {"dry_run": True, "call": planned.call.as_json(), **planned.extra}
        finally:
            lane.pending -= 1
            if holds_cooldown and not session.attempted:
                if previous is None:
                    lane.last_disruption.pop(kind, None)
                else:
                    lane.last_disruption[kind] = previous
        return _answer(command, envelope, data=data)

    def _admit(self, meter: str, lane: _MeterState) -> None:
        now = self._clock()
        if lane.pending >= self.limits.queue:
            raise CommandError(ErrorCode.BUSY, f"meter {meter} already has {lane.pending} commands "
                                       "waiting; try again later")
        while lane.admitted and lane.admitted[0] <= now - self.limits.rate_window_s:
            lane.admitted.popleft()
        if len(lane.admitted) >= self.limits.rate:
            wait = lane.admitted[0] + self.limits.rate_window_s - now
            raise CommandError(ErrorCode.BUSY, f"rate limit of {self.limits.rate} commands per "
                                       f"{self.limits.rate_window_s:g} s reached for meter "
                                       f"{meter}; try again in {wait:.0f} s")
        lane.admitted.append(now)

    def _check_cooldown(self, lane: _MeterState, action: Action) -> None:
        kind = action.cooldown
        last = lane.last_disruption.get(kind) if kind else None
        if last is None:
            return
        cooldown = lane.settings.cooldown_s(kind)
        since = self._clock() - last
        if since < cooldown:
            what = "rebooted" if kind == "reboot" else "CTid-scanned or flashed"
            raise CommandError(ErrorCode.COOLDOWN, f"the meter was {what} less than "
                               f"{cooldown:g} s ago; try again in {cooldown - since:.0f} s")

    async def _run(self, meter: str, lane: _MeterState, action: Action, session: Session) -> Any:
        timeout = lane.settings.timeout_s + action.wait_s
        try:
            async with asyncio.timeout(timeout):
                async with lane.turn:
                    return await action.run(session)
        except TimeoutError:
            hint = "; the meter may still carry it out" if session.attempted else ""
            raise CommandError(ErrorCode.TIMEOUT, f"no result within {timeout:g} s{hint}") from None
        except (CommandError, Planned):
            raise
        except MeterTimeout as exc:
            raise CommandError(ErrorCode.TIMEOUT, exc.message) from None
        except MeterUnavailable as exc:
            raise CommandError(ErrorCode.OFFLINE, exc.message) from None
        except MeterReportedError as exc:
            code = ErrorCode.CONFLICT if isinstance(exc, ConfigConflict) else ErrorCode.METER_ERROR
            raise CommandError(code, exc.message) from None
        except (MeterError, GatewayError) as exc:
            raise CommandError(ErrorCode.METER_ERROR, str(exc)) from None
        except Exception as exc:
            log.exception("command_failed", meter=meter)
            raise CommandError(ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__}") from None

    # -- answers and audit ------------------------------------------------------------------

    async def _record(self, request: Addressed, envelope: Envelope | None,
                      response: CommandResponse | None, started: float, *, note: str) -> None:
        await self._audit.record(audit_event(request, envelope, response,
                                             self._clock() - started, note))


def _answer(request: Addressed, envelope: Envelope | None, *, data: Any = None,
            code: ErrorCode | None = None, error: str | None = None) -> CommandResponse:
    """The response, shown as it may be published: secret-looking members of ``data`` at
    any depth masked, tokens in the error text masked (:mod:`gateway.commands.redaction`)."""
    transaction = envelope.transaction if envelope else None
    status = "ok" if code is None else "error"
    return CommandResponse(request.meter, request.action, status, mask(data),
                           None if error is None else mask_text(error), transaction, code)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
