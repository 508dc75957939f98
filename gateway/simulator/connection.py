"""One client connection to a simulated meter: the server's HTTP protocol
(:class:`~gateway.support.http_protocol.HttpProtocol`, on h11, with its limits) answering WebAPI and
control requests one at a time, in order, and applying delays, hangs and resets. Callbacks
only, so thousands of connections cost no tasks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.simulator import control
from gateway.simulator.meter import SimMeter
from gateway.simulator.reply import Reply, error_reply
from gateway.simulator.router import respond
from gateway.support import Answer, HttpProtocol, HttpSite, Request


@dataclass(eq=False)
class Endpoint:
    """One meter's listening socket and open connections."""

    meter: SimMeter
    host: str
    port: int
    site: HttpSite
    server: asyncio.Server | None = None
    downtime: asyncio.Task[None] | None = None


class Connection(HttpProtocol):
    def __init__(self, endpoint: Endpoint, *, tls: bool, control: bool) -> None:
        super().__init__(endpoint.site, tls=tls)
        self.endpoint = endpoint
        self._control = control
        self._pending: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.endpoint.meter.is_down:
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        super().connection_lost(exc)

    def drop(self, abort: bool) -> None:
        """Close (flushing what is written) or abort this connection."""
        if abort:
            self.abort()
        else:
            self.close()

    def error_answer(self, status: int, message: str) -> Answer:
        return error_reply(message, status)

    def on_request(self, req: Request) -> None:
        meter = self.endpoint.meter
        if self._control and req.path.startswith(control.PREFIX):
            self._send(control.handle(meter, req))
            return
        outcome = respond(meter, req)
        if outcome.action == "hang":
            return  # accepted, never answered (no timer runs while a request is in service)
        if outcome.action == "reset" or outcome.reply is None:
            self.abort()
            return
        if outcome.delay_s > 0:
            self._pending = asyncio.get_running_loop().call_later(
                outcome.delay_s, self._send_later, outcome.reply)
            return
        self._send(outcome.reply)

    def _send_later(self, reply: Reply) -> None:
        self._pending = None
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.answer(reply)
        if reply.down_after_s:
            self.endpoint.meter.go_down(reply.down_after_s)
