"""The audit trail: one event per request (who asked what, and how it ended; no secrets),
:class:`AuditTrail` (the ``command`` log event and the audit sinks of a router), and
:class:`CommandTally`, the audit sink that counts outcomes for ``/metrics``."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog

from gateway.commands.actions import ACTIONS
from gateway.commands.envelope import Envelope
from gateway.commands.redaction import shown_request
from gateway.commands.request import CommandResponse

log = structlog.get_logger(__name__)

AuditSink = Callable[[Mapping[str, Any]], Awaitable[None] | None]


class Addressed(Protocol):
    """What every request carries, decoded or not."""

    @property
    def meter(self) -> str: ...

    @property
    def action(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def client(self) -> str: ...

    @property
    def notes(self) -> tuple[str, ...]: ...


def audit_event(request: Addressed, envelope: Envelope | None,
                response: CommandResponse | None, duration_s: float, note: str
                ) -> dict[str, Any]:
    """The audit record of one request: who asked what and how it ended (no secrets)."""
    outcome = "ignored" if response is None else str(response.code or "ok")
    event: dict[str, Any] = {
        "meter": request.meter, "action": request.action, "source": request.source,
        "client": request.client,
        "transaction": envelope.transaction if envelope else None,
        "outcome": outcome, "duration_s": round(duration_s, 4),
        "dry_run": envelope.dry_run if envelope else False,
    }
    notes = [n for n in (note, *request.notes) if n]
    if notes:
        event["note"] = ", ".join(notes)
    if response is not None and response.error:
        event["error"] = response.error
    if envelope is not None:
        event["request"] = shown_request(envelope.body)
    return event


class AuditTrail:
    """Where a router's audit events go: the structlog ``command`` event, then each sink in
    turn; a sink's failure is only logged (``command_audit_failed``), never changes an
    answer."""

    def __init__(self, sinks: list[AuditSink]) -> None:
        self._sinks = sinks
        self._late: list[Awaitable[None]] = []  # async sinks' results of record_now()

    def add(self, sink: AuditSink) -> None:
        self._sinks.append(sink)

    async def record(self, event: Mapping[str, Any]) -> None:
        """Log ``event`` and hand it to every sink, awaiting the async ones."""
        await self.settle()
        for result in self._hand_out(event):
            try:
                await result
            except Exception as exc:
                log.warning("command_audit_failed", meter=event.get("meter"),
                            error=_short(exc))

    def record_now(self, event: Mapping[str, Any]) -> None:
        """The same without waiting (a request answered at once): what an async sink returns
        is awaited by the next :meth:`record` or :meth:`settle`."""
        self._late.extend(self._hand_out(event))

    async def settle(self) -> None:
        """Await what :meth:`record_now` left."""
        late, self._late = self._late, []
        for result in late:
            try:
                await result
            except Exception as exc:
                log.warning("command_audit_failed", error=_short(exc))

    def _hand_out(self, event: Mapping[str, Any]) -> list[Awaitable[None]]:
        log.info("command", **event)
        pending: list[Awaitable[None]] = []
        for sink in self._sinks:
            try:
                result = sink(event)
            except Exception as exc:
                log.warning("command_audit_failed", meter=event.get("meter"),
                            error=_short(exc))
                continue
            if inspect.isawaitable(result):
                pending.append(result)
        return pending


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


class CommandTally:
    """An audit sink that counts each request's outcome per meter and action (unknown action
    names count as ``other``, and so do meters that ``known`` does not know, so a stranger
    cannot grow the label set) and hands the event on to ``forward``."""

    def __init__(self, forward: AuditSink | None = None,
                 known: Callable[[str], bool] | None = None) -> None:
        self.forward = forward
        self.known = known  # which meter ids count under their own name (None: all)
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, event: Mapping[str, Any]) -> Awaitable[None] | None:
        action, meter = str(event.get("action", "")), str(event.get("meter", ""))
        if self.known is not None and not self.known(meter):
            meter = "other"
        key = (meter, action if action in ACTIONS else "other", str(event.get("outcome", "")))
        self.counts[key] += 1
        return self.forward(event) if self.forward is not None else None
