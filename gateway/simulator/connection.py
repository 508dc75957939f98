"""One client connection to a simulated meter: an asyncio protocol that parses requests,
answers them one at a time (in order, honouring keep-alive) and applies delays, hangs and
resets. Callbacks only, so thousands of connections cost no tasks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from gateway.simulator import control
from gateway.simulator.meter import SimMeter
from gateway.simulator.reply import Reply, error_reply
from gateway.simulator.router import respond
from gateway.support import HttpError, Request, RequestParser, render

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    """What every connection of a server shares."""

    tls: bool = False
    control: bool = False  # serve the /__sim__/ control endpoint
    idle_timeout_s: float = 75.0

    def is_control(self, path: str) -> bool:
        return self.control and path.startswith(control.PREFIX)


@dataclass(eq=False)
class Endpoint:
    """One meter's listening socket and open connections."""

    meter: SimMeter
    host: str
    port: int
    server: asyncio.Server | None = None
    connections: set[Connection] = field(default_factory=set)
    downtime: asyncio.Task[None] | None = None


class Connection(asyncio.Protocol):
    def __init__(self, settings: Settings, endpoint: Endpoint) -> None:
        self.server = settings
        self.endpoint = endpoint
        self.parser = RequestParser(tls=settings.tls)
        self.transport: asyncio.Transport | None = None
        self._busy = False  # an answer is being delayed
        self._hung = False
        self._timer: asyncio.TimerHandle | None = None
        self._pending: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.endpoint.meter.is_down:
            transport.abort()
            return
        self.endpoint.connections.add(self)
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.connections.discard(self)
        for handle in (self._timer, self._pending):
            if handle is not None:
                handle.cancel()
        self.transport = None

    def drop(self, abort: bool) -> None:
        """Close (flushing what is written) or abort this connection."""
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    def _touch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.server.idle_timeout_s, self._idle)

    def _idle(self) -> None:
        if not self._busy and not self._hung:
            self.drop(abort=False)

    def data_received(self, data: bytes) -> None:
        if self._hung:
            return
        self.parser.feed(data)
        self._touch()
        self._work()

    def _work(self) -> None:
        while not self._busy and not self._hung and self.transport is not None \
                and not self.transport.is_closing():
            try:
                req = self.parser.next_request()
            except HttpError as exc:
                self._send(error_reply(str(exc), exc.status), keep_alive=False)
                return
            if req is None:
                return
            self._answer(req)

    def _answer(self, req: Request) -> None:
        meter = self.endpoint.meter
        if self.server.is_control(req.path):
            self._send(control.handle(meter, req), req.keep_alive)
            return
        outcome = respond(meter, req)
        if outcome.action == "hang":
            self._hung = True
            return
        if outcome.action == "reset" or outcome.reply is None:
            self.drop(abort=True)
            return
        if outcome.delay_s > 0:
            self._busy = True
            self._pending = asyncio.get_running_loop().call_later(
                outcome.delay_s, self._send_later, outcome.reply, req.keep_alive)
            return
        self._send(outcome.reply, req.keep_alive)

    def _send_later(self, reply: Reply, keep_alive: bool) -> None:
        self._busy = False
        self._pending = None
        self._send(reply, keep_alive)
        self._work()

    def _send(self, reply: Reply, keep_alive: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(render(reply, keep_alive))
        self._touch()
        if not keep_alive:
            self.transport.close()
        if reply.down_after_s:
            self.endpoint.meter.go_down(reply.down_after_s)
