"""HTTP/1.1 connections on h11 (its only user here: h11 parses, frames and renders), within
the limits of :class:`~gateway.support.http_limits.HttpLimits`.

An :class:`HttpProtocol` (callbacks, no task per connection) hands each complete request to
:meth:`~HttpProtocol.on_request`, answered with :meth:`~HttpProtocol.answer`, now or later, in
order. Pipelined bytes wait in the connection's inbox; past ``max_pipelined_bytes``, or while
the client does not take its answers, it is not read; ``max_pipelined`` answers in a row, then
other connections get their turn. Bad bytes and every limit end in an error answer and a
lingering close. Timers: idle, head and request deadlines (from the request's first byte,
however the bytes trickle), write (a client that reads nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum

import h11

from gateway.support.http_message import Answer, Request, Response, reason_phrase, request_from
from gateway.support.http_site import HttpSite

_LINGER_S = 2.0  # after an error answer: how long to discard what the client still sends
_VERSIONS = (b"1.0", b"1.1")


class Phase(enum.Enum):
    WAITING = "waiting"  # for a request (idle, or its head is arriving)
    BODY = "body"  # the head is complete, the body is arriving
    SERVICE = "service"  # the request is complete and being answered
    CLOSING = "closing"


class HttpProtocol(asyncio.Protocol):
    """One server-side connection; subclasses implement :meth:`on_request`."""

    def __init__(self, site: HttpSite, *, tls: bool = False) -> None:
        self.site = site
        self.limits = site.limits
        self.tls = tls
        self.peer = ""
        self.transport: asyncio.Transport | None = None
        self._h11 = h11.Connection(h11.SERVER,
                                   max_incomplete_event_size=site.limits.max_header_bytes)
        self._loop = asyncio.get_running_loop()
        self._inbox = bytearray()  # received, not yet given to h11
        self._eof = self._eof_fed = False
        self.phase = Phase.WAITING
        self._head: h11.Request | None = None
        self._body = bytearray()
        self._method = b""
        self._started: float | None = None  # loop time of the current request's first byte
        self._waiting_since = self._loop.time()
        self._served = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_key: tuple[str, float] | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._writing_paused = self._reading_paused = self._processing = False
        self._turn = 0
        self._turn_handle: asyncio.Handle | None = None
        self._continue_sent = False

    # -- what subclasses use --------------------------------------------------------------

    def on_request(self, req: Request) -> None:
        """Answer ``req`` with :meth:`answer` (now or later) or :meth:`abort`."""
        raise NotImplementedError

    def error_answer(self, status: int, message: str) -> Answer:
        """The answer to a request refused by the protocol or a limit."""
        return Response(status, f"{message}\n".encode())

    def answer(self, answer: Answer) -> None:
        """Send the answer to the request in service (ignored when there is none)."""
        transport = self.transport
        if self.phase is not Phase.SERVICE or transport is None or transport.is_closing():
            return
        self.site.stats.answered += 1
        self._served += 1
        try:
            data = self._message(answer, ())
        except h11.LocalProtocolError as exc:  # a handler's bad status or header
            self.site.stats.handler_errors += 1
            self.site.throttle.emit("error", "http_answer_invalid", status=answer.status,
                                    error=str(exc))
            self.abort()
            return
        transport.write(data)  # may call pause_writing
        self._method = b""
        if self._h11.our_state is h11.MUST_CLOSE:
            self.close()
            return
        self.phase = Phase.WAITING
        self._waiting_since = self._loop.time()
        self._started = None
        if not self._processing:  # answered later (a delayed answer): carry on reading
            self._turn = 0
            self._process()

    def close(self) -> None:
        """Close after flushing what is written (a client that never reads it is aborted
        after ``write_timeout_s``)."""
        transport = self.transport
        if transport is None:
            return
        self.phase = Phase.CLOSING
        transport.close()
        self._arm("linger", self._loop.time() + self.limits.write_timeout_s)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def held_bytes(self) -> int:
        """Bytes received and not yet parsed, plus answers the client has not yet taken."""
        transport = self.transport
        written = transport.get_write_buffer_size() if transport is not None else 0
        return len(self._inbox) + written

    @property
    def evictable(self) -> bool:
        """Waiting for a request (idle or its head arriving), not blocked on the client."""
        return self.phase is Phase.WAITING and not self._writing_paused

    @property
    def eviction_rank(self) -> tuple[bool, float]:
        """Lowest first: never served, then waiting the longest."""
        return self._served > 0, self._waiting_since

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        if not self.site.admit(self):
            transport.abort()
            return
        transport.set_write_buffer_limits(high=self.limits.write_buffer_bytes)
        self._arm_wait()

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.release(self)
        for handle in (self._timer, self._write_timer, self._turn_handle):
            if handle is not None:
                handle.cancel()
        self._inbox.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.CLOSING:
            return  # lingering after an error answer
        if self.phase is Phase.WAITING and self._started is None:
            self._started = self._loop.time()
        self._inbox += data
        self._turn = 0
        self._process()

    def eof_received(self) -> bool:
        if self.phase is Phase.CLOSING:
            return False  # the client has read the error answer: close
        self._eof = True
        self._turn = 0
        self._process()
        # answer what is complete, then close (h11's ConnectionClosed); TLS cannot half-close
        return not self.tls

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(self.limits.write_timeout_s,
                                                      self._not_reading)
        self._flow()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self._turn = 0
        self._process()

    # -- the request cycle ----------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            self._advance()
        finally:
            self._processing = False
        self._flow()

    def _advance(self) -> None:
        conn = self._h11
        while (self.transport is not None and not self.transport.is_closing()
               and self.phase in (Phase.WAITING, Phase.BODY) and not self._writing_paused):
            if self._turn >= self.limits.max_pipelined:
                if self._turn_handle is None:
                    self._turn_handle = self._loop.call_soon(self._next_turn)
                return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.reject(exc.error_status_hint, _kind(exc))
                return
            if event is h11.NEED_DATA:
                if self._inbox:  # in slices: what waits stays countable in the inbox
                    conn.receive_data(bytes(self._inbox[:self.limits.max_header_bytes]))
                    del self._inbox[:self.limits.max_header_bytes]
                elif self._eof and not self._eof_fed:
                    self._eof_fed = True
                    conn.receive_data(b"")
                else:
                    self._need_data()
                    return
            elif event is h11.PAUSED:
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                if self._inbox:
                    self._started = self._loop.time()
            elif isinstance(event, h11.Request):
                self._on_head(event)
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.limits.max_body_bytes:
                    self.reject(413, "request body too large")
            elif isinstance(event, h11.EndOfMessage):
                self._on_complete()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()

    def _next_turn(self) -> None:
        self._turn_handle = None
        self._turn = 0
        self._process()

    def _need_data(self) -> None:
        """h11 waits for bytes: arm the timer of the phase (and 100 Continue)."""
        conn = self._h11
        if self.phase is Phase.WAITING:
            if self._started is None and conn.trailing_data[0]:  # a pipelined head, partial
                self._started = self._loop.time()
            self._arm_wait()
        elif conn.they_are_waiting_for_100_continue and not self._continue_sent:
            self._continue_sent = True
            assert self.transport is not None
            go_on = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            self.transport.write(conn.send(go_on) or b"")

    def _on_head(self, head: h11.Request) -> None:
        limits = self.limits
        if head.http_version not in _VERSIONS:
            self.reject(505, "HTTP version not supported")
            return
        size = len(head.method) + len(head.target) + 12 + sum(
            len(name) + len(value) + 4 for name, value in head.headers)
        if size > limits.max_header_bytes:
            self.reject(431, "request header fields too large")
            return
        declared = next((int(v) for n, v in head.headers if n == b"content-length"), 0)
        if declared > limits.max_body_bytes:
            self.reject(413, "request body too large")
            return
        self._head, self._body, self._method = head, bytearray(), head.method
        self._continue_sent = False
        if self._h11.their_state is h11.SEND_BODY:
            self.phase = Phase.BODY
            started = self._started if self._started is not None else self._loop.time()
            self._arm("request", started + limits.request_timeout_s)

    def _on_complete(self) -> None:
        head = self._head
        assert head is not None
        self._head = None
        body, self._body = bytes(self._body), bytearray()
        req = request_from(head.method, head.target, head.http_version, list(head.headers),
                           body, tls=self.tls,
                           keep_alive=self._h11.their_state is not h11.MUST_CLOSE)
        self.phase = Phase.SERVICE
        self._disarm()
        self._turn += 1
        try:
            self.on_request(req)
        except Exception as exc:  # one broken page must not take the connection down
            self.site.stats.handler_errors += 1
            self.site.throttle.emit("error", "http_handler_failed", path=req.path,
                                    error=repr(exc), exc_info=exc)
            self.answer(Response(500, b"Internal Server Error\n"))

    def _message(self, answer: Answer, extra: tuple[tuple[str, str], ...]) -> bytes:
        """The whole response through h11 (no body for HEAD); LocalProtocolError when h11
        refuses it."""
        conn = self._h11
        body = answer.body
        fields = [("Content-Type", answer.content_type), ("Content-Length", str(len(body))),
                  *answer.headers, *extra]
        data = conn.send(h11.Response(status_code=answer.status, headers=fields,
                                      reason=reason_phrase(answer.status))) or b""
        if body and self._method != b"HEAD":
            data += conn.send(h11.Data(data=body)) or b""
        return data + (conn.send(h11.EndOfMessage()) or b"")

    def reject(self, status: int, reason: str) -> None:
        """Answer ``status`` (a request the protocol or a limit refuses) and close."""
        stats = self.site.stats
        stats.rejected[status] += 1
        self.site.throttle.emit("info", "http_request_rejected", status=status, reason=reason,
                                peer=self.peer, rejected=sum(stats.rejected.values()))
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            answer = self.error_answer(status, reason_phrase(status).decode() + f": {reason}")
            with contextlib.suppress(h11.LocalProtocolError):  # h11 refuses: no answer
                transport.write(self._message(answer, (("Connection", "close"),)))
        self._linger()

    def _linger(self) -> None:
        transport = self.transport
        assert transport is not None
        self.phase = Phase.CLOSING
        self._inbox.clear()
        if transport.can_write_eof() and not self._eof:
            transport.write_eof()
        else:
            transport.close()
        self._arm("linger", self._loop.time() + _LINGER_S)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    # -- flow control and timers ----------------------------------------------------------

    def _flow(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.phase is Phase.CLOSING:
            return
        pause = self._writing_paused or len(self._inbox) >= self.limits.max_pipelined_bytes
        if pause and not self._reading_paused:
            self._reading_paused = True
            self.site.stats.paused += 1
            transport.pause_reading()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _arm_wait(self) -> None:
        if self._started is None:
            self._arm("idle", self._waiting_since + self.limits.idle_timeout_s)
        else:
            self._arm("header", self._started + self.limits.header_timeout_s)

    def _arm(self, kind: str, when: float) -> None:
        if self._timer_key == (kind, when):
            return
        self._disarm()
        self._timer_key = (kind, when)
        self._timer = self._loop.call_at(when, self._expired, kind)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_key = None

    def _expired(self, kind: str) -> None:
        self._timer = self._timer_key = None
        if kind == "linger":
            self.abort()
            return
        self.site.stats.timeouts[kind] += 1
        if kind == "idle":
            self.close()
        elif kind == "header":
            self.reject(408, f"request head not complete within {self.limits.header_timeout_s} s")
        else:
            self.reject(408, f"request not complete within {self.limits.request_timeout_s} s")

    def _not_reading(self) -> None:
        self._write_timer = None
        self.site.stats.timeouts["write"] += 1
        self.site.throttle.emit("info", "http_client_not_reading", peer=self.peer,
                                waited_s=self.limits.write_timeout_s)
        self.abort()


def _kind(exc: h11.RemoteProtocolError) -> str:
    """h11's message without the bytes it quotes (they may hold anything, a secret too)."""
    return str(exc).split(":", 1)[0][:80]
