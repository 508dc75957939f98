"""HTTP/1.1 on asyncio for synchronous handlers: the gateway's own endpoint (``/healthz``,
``/metrics``, ...) serves through :class:`WebServer`; the simulator's meters use the same
connection protocol (:mod:`gateway.support.http_protocol`, on h11) with answers of their own.

Requests on one connection are answered in order; a handler that raises is answered with 500
and logged as ``http_handler_failed``. A handler may also return an awaitable answer (a page
that has to ask someone else first, e.g. the supervisor's merged ``/metrics``): it is awaited
in a task the server owns (cancelled by :meth:`WebServer.close`) and the connection's next
request waits for it. Every limit of :class:`HttpLimits` applies (header and
body size, pipelining, unread answers, idle, head and request timeouts, connections); the
counters are in :attr:`WebServer.stats`. Query strings are split on ``&`` and percent-decoded
with ``+`` kept literally (the eGauge WebAPI's ``reg=3+5``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.support.http_limits import HttpLimits, HttpStats
from gateway.support.http_message import Answer, Handler, Request, Response, split_query
from gateway.support.http_protocol import HttpProtocol
from gateway.support.http_site import HttpSite, log
from gateway.support.throttle import LogThrottle

__all__ = ["Answer", "AsyncHandler", "Handler", "HttpLimits", "HttpStats", "Request", "Response",
           "WebServer", "split_query"]

AsyncHandler = Callable[[Request], Answer | Awaitable[Answer]]


class WebServer:
    """Serves a synchronous ``handler`` on ``host:port`` (port 0: any free port), within
    ``limits`` (read at :meth:`start`)."""

    def __init__(self, handler: Handler | AsyncHandler, host: str = "127.0.0.1", port: int = 0,
                 *, limits: HttpLimits | None = None) -> None:
        self.handler = handler
        self.host = host
        self._port = port
        self.limits = limits if limits is not None else HttpLimits()
        self.stats = HttpStats()
        self._server: asyncio.Server | None = None
        self._site: HttpSite | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # awaitable answers being awaited

    @property
    def port(self) -> int:
        """The bound port once listening, else the configured one."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    def held_bytes(self) -> int:
        """Bytes the open connections hold: received and not yet parsed, answered and not
        yet taken by the client (bounded by the limits, whatever the clients do)."""
        return self._site.held_bytes() if self._site is not None else 0

    async def start(self) -> None:
        """Listen; an :class:`OSError` (port in use, bad address) propagates."""
        loop = asyncio.get_running_loop()
        site = self._site = HttpSite(self.limits, self.stats,
                                     LogThrottle(log, self.limits.log_interval_s))
        handler = self.handler
        self._server = await loop.create_server(lambda: _Served(site, handler, self._spawn),
                                                self.host, self._port, reuse_address=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening and drop every connection (answers in flight are lost)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._site is not None:
            self._site.drop_all(abort=True)
        await server.wait_closed()


class _Served(HttpProtocol):
    def __init__(self, site: HttpSite, handler: Handler | AsyncHandler,
                 spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        super().__init__(site)
        self._handler = handler
        self._spawn = spawn

    def on_request(self, req: Request) -> None:
        answer = self._handler(req)
        if inspect.isawaitable(answer):
            self._spawn(self._later(req, answer), f"http-answer:{req.path}")
        else:
            self.answer(answer)

    async def _later(self, req: Request, pending: Awaitable[Answer]) -> None:
        try:
            answer = await pending
        except Exception as exc:  # as a handler that raises: 500, logged
            self.site.stats.handler_errors += 1
            self.site.throttle.emit("error", "http_handler_failed", path=req.path,
                                    error=repr(exc), exc_info=exc)
            answer = Response(500, b"Internal Server Error\n")
        self.answer(answer)
