"""The HTTP channel to one meter: one httpx connection pool, errors converted at the edge.

Transport problems become ``MeterUnavailable`` / ``MeterTimeout``, bodies that are not JSON
become ``MeterProtocolError``, and an ``error`` member becomes ``MeterReportedError`` (or
``CallPending`` for "EAGAIN: ..."). Nothing here knows about tokens: the caller passes the
bearer token it wants sent.

What a meter (or whatever answers at its address) sends is bounded: a reply body is read up
to ``max_bytes`` (:data:`MAX_REPLY_BYTES`, larger for history rows) and refused beyond it
(:class:`~gateway.errors.MeterReplyTooLarge`), however long or endless it is; a whole request,
its reply body included, must finish within ``timeout_s`` (httpx's own timeouts apply to each
phase only, so a body that trickles would otherwise never time out); redirects are not
followed; JSON nested beyond Python's limit, and the non-standard ``NaN`` / ``Infinity``,
are protocol errors.

Requests go straight to an ``httpx.AsyncHTTPTransport`` (httpx's public transport API), not
through an ``httpx.AsyncClient``: the client's layers -- cookie jars, auth flows, redirect
handling, URL merging, event hooks -- do nothing for a meter's WebAPI (no cookies, no
redirects, the bearer token is ours) and cost a fifth of the CPU of a poll.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import structlog

from gateway.errors import (
    CallPending,
    ConfigConflict,
    ConfigError,
    MeterProtocolError,
    MeterReplyTooLarge,
    MeterReportedError,
    MeterTimeout,
    MeterUnavailable,
)
from gateway.secret import Secret

log = structlog.get_logger(__name__)

NO_BODY: Any = object()  # "send no request body" (``None`` would be the JSON value null)

HTTP_PRECONDITION_FAILED = 412
MAX_REPLY_BYTES: Final = 4 * 1024 * 1024  # any reply: register values, config trees, ...
MAX_HISTORY_BYTES: Final = 32 * 1024 * 1024  # a reply of stored rows


def parse_json(content: bytes) -> Any:
    """JSON text as Python values; ValueError (or UnicodeDecodeError) for anything that is not
    strict JSON: bad syntax, ``NaN`` / ``Infinity``, nesting deeper than Python can parse."""
    try:
        return json.loads(content, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def api_url(meter: str, url: str) -> str:
    """``scheme://host[:port]`` (optionally ending in /api) -> the WebAPI base URL."""
    parts = urlsplit(url.strip())
    problems = []
    if parts.scheme not in ("http", "https"):
        problems.append(f"url {url!r}: the scheme must be http or https")
    if not parts.hostname:
        problems.append(f"url {url!r}: no host")
    if parts.username is not None or parts.password is not None:
        problems.append("url: credentials belong in username/password, not in the URL")
    if parts.query or parts.fragment:
        problems.append(f"url {url!r}: no query or fragment allowed")
    if problems:
        raise ConfigError(problems, source=f"meter {meter}")
    base = url.strip().rstrip("/")
    return base if base.endswith("/api") else base + "/api"


def tls_verify(meter: str, verify_tls: bool | str) -> bool | ssl.SSLContext:
    """``True`` (system CAs), ``False`` (no verification) or an SSL context for a CA bundle."""
    if isinstance(verify_tls, bool):
        return verify_tls
    try:
        return ssl.create_default_context(cafile=verify_tls)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"verify_tls: cannot load the CA bundle {verify_tls!r}: {exc}"],
            source=f"meter {meter}",
        ) from exc


class TlsContexts:
    """One SSL context per ``verify_tls`` setting, shared by every channel that uses it.

    Each context holds its own copy of the trust store (about 1 MB and 20 ms of CPU with
    certifi's bundle), so a fleet of meters shares them; an ``http://`` meter is given the
    unverified one (it never speaks TLS, but its transport wants a context)."""

    def __init__(self) -> None:
        self._made: dict[bool | str, ssl.SSLContext] = {}

    def get(self, meter: str, verify_tls: bool | str) -> ssl.SSLContext:
        made = self._made.get(verify_tls)
        if made is None:
            made = self._made[verify_tls] = _context(meter, verify_tls)
        return made


def _context(meter: str, verify_tls: bool | str) -> ssl.SSLContext:
    verify = tls_verify(meter, verify_tls)
    return verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)


@dataclass(frozen=True, slots=True)
class Reply:
    """A meter's answer: status, headers as sent (``Content-Encoding`` included) and the
    whole body, decoded. (Not an ``httpx.Response``: building one again around a body read
    under a limit cost a fiftieth of a poll.)"""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers


class Channel:
    """Sends requests to one meter's ``/api`` and decodes its JSON replies."""

    def __init__(
        self,
        meter: str,
        url: str,
        *,
        verify_tls: bool | str = True,
        timeout_s: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
        tls: TlsContexts | None = None,
    ) -> None:
        self.meter = meter
        self.api = api_url(meter, url)
        self.timeout_s = timeout_s
        verify: bool | ssl.SSLContext
        if not self.api.startswith("https:"):
            # no TLS, no trust store; but httpx builds a context for each transport all the
            # same (13 kB each, and a new transport after every cancelled request)
            verify = False if tls is None else tls.get(meter, False)
        elif tls is not None:
            verify = tls.get(meter, verify_tls)
        else:
            verify = tls_verify(meter, verify_tls)
        self._verify = verify
        self._own = transport is None  # a transport of our own is renewed after a cancel
        self._transport = transport or self._new_transport()
        self._retired: list[httpx.AsyncBaseTransport] = []  # to close before the next send
        self.renewals = 0  # pools replaced after a request was cancelled
        self._timeout = httpx.Timeout(timeout_s, pool=None).as_dict()
        self._closed = False

    def _new_transport(self) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(
            verify=self._verify,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))

    def _renew(self) -> None:
        """Replace the connection pool after a request was cancelled in it (a deadline, or a
        caller's time limit): httpcore 1.0's pool can keep the slots of cancelled requests
        for good, and then every later request waits for a slot until its deadline
        (encode/httpcore#1093) -- a meter that answers would stay offline until a restart.
        The old pool is closed before the next request."""
        if self._own and not self._closed:
            self._retired.append(self._transport)
            self._transport = self._new_transport()
            self.renewals += 1

    async def send(
        self,
        method: str,
        path: str,
        query: str = "",
        *,
        body: Any = NO_BODY,
        bearer: Secret | None = None,
        headers: dict[str, str] | None = None,
        max_bytes: int = MAX_REPLY_BYTES,
        deadline: bool = True,
    ) -> Reply:
        """One request to ``/api<path>?<query>`` and its whole reply (at most ``max_bytes``
        of body); transport errors become meter errors. ``deadline``: the whole of it within
        ``timeout_s`` (off: each phase within it, for a caller with a time limit of its own)."""
        if self._closed:
            raise MeterUnavailable(self.meter, f"{method} {path}: the client is closed")
        if self._retired:
            await self._close_retired()
        url = self.api + path + ("?" + query if query else "")
        hdrs = {**_ACCEPT, **headers} if headers else dict(_ACCEPT)
        if bearer is not None:
            hdrs["Authorization"] = "Bearer " + bearer.reveal()
        content: bytes | None = None
        if body is not NO_BODY:
            content = json.dumps(body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            request = httpx.Request(method, url, content=content, headers=hdrs,
                                    extensions={"timeout": self._timeout})
            async with asyncio.timeout(self.timeout_s if deadline else None):
                return await self._exchange(request, max_bytes, f"{method} {path}")
        except asyncio.CancelledError:
            self._renew()  # cancelled from outside (a caller's time limit): not swallowed
            raise
        except (httpx.TimeoutException, TimeoutError) as exc:
            self._renew()
            raise MeterTimeout(
                self.meter, f"no answer within {self.timeout_s:g} s ({method} {path})"
            ) from exc
        except httpx.TransportError as exc:
            raise MeterUnavailable(self.meter, _transport_problem(exc, method, path)) from exc
        except httpx.HTTPError as exc:  # invalid URL and the like
            raise MeterUnavailable(self.meter, f"{method} {path}: {exc}") from exc

    async def _exchange(self, request: httpx.Request, max_bytes: int, what: str) -> Reply:
        """Send ``request`` and read its body, refusing it past ``max_bytes``: the reply with
        its whole (decoded) body."""
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise self._too_large(what, max_bytes, f"{declared} bytes announced")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:  # let go of the body now, not when the collector
                    chunks.clear()  # breaks the traceback's cycle through this frame
                    raise self._too_large(what, max_bytes, "cut off there")
                chunks.append(chunk)
        finally:
            await response.aclose()
        return Reply(response.status_code, response.headers, b"".join(chunks))

    def _too_large(self, what: str, max_bytes: int, detail: str) -> MeterReplyTooLarge:
        return MeterReplyTooLarge(
            self.meter, f"the reply to {what} is larger than {max_bytes} bytes ({detail})",
            field="body")

    def decode(self, response: Reply, what: str) -> Any:
        """The JSON value of ``response`` (raises if it is not JSON or carries ``error``)."""
        try:
            value = parse_json(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            if response.status_code != 200:
                raise MeterReportedError(
                    self.meter, f"HTTP {response.status_code}{_redirect(response)} ({what})",
                    field="status",
                ) from exc
            raise MeterProtocolError(
                self.meter, f"the reply to {what} is not valid JSON ({exc})", field="body"
            ) from exc
        if type(value) is dict:
            error = value.get("error")
            if error:
                text = str(error)
                cls = CallPending if text.startswith("EAGAIN") else MeterReportedError
                if response.status_code == HTTP_PRECONDITION_FAILED:
                    cls = ConfigConflict
                raise cls(self.meter, f"{text} ({what})", field="error")
        if response.status_code == HTTP_PRECONDITION_FAILED:
            raise ConfigConflict(self.meter, f"HTTP 412 ({what})", field="status")
        if response.status_code != 200:
            raise MeterReportedError(
                self.meter, f"HTTP {response.status_code}{_redirect(response)} ({what})",
                field="status",
            )
        return value

    async def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for transport in retired:
            try:
                await transport.aclose()
            except Exception as exc:  # a pool given up on: nothing of it is needed any more
                log.debug("meter_pool_close_failed", meter=self.meter, error=repr(exc))

    async def aclose(self) -> None:
        self._closed = True
        try:
            await self._close_retired()
        finally:
            await self._transport.aclose()


_ACCEPT: Final = {"Accept": "application/json"}


def _redirect(response: Reply) -> str:
    return ", a redirect (not followed)" if response.is_redirect else ""


def _transport_problem(exc: httpx.TransportError, method: str, path: str) -> str:
    """A one-line reason for a transport failure, naming TLS problems as such."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"TLS certificate verification failed ({cause.verify_message}); "
                "give the meter's CA bundle (verify_tls: PATH) or turn verification off"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or cause})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({reason})"
    return f"{method} {path}: {reason}"
