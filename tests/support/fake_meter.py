"""A minimal eGauge login and routing fake for ``httpx.MockTransport`` unit tests.

It checks the digest hash with its own hashlib code (independent of gateway.meter.auth), hands
out JWTs whose payload the test chooses, and serves whatever routes a test registers. The
integration tests use the real simulator over real HTTP; this fake keeps unit tests socket-free.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx

from gateway.meter import WebApiClient
from gateway.secret import Secret

REALM = "eGauge Administration"
URL = "http://meter.test"
Route = Callable[[httpx.Request], httpx.Response]


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(payload: dict[str, Any]) -> str:
    return f"{b64url({'typ': 'JWT', 'alg': 'HS256'})}.{b64url(payload)}.c2lnbmF0dXJl"


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


class FakeMeter:
    """Serves /api/auth/* like an eGauge and the routes a test adds; records every request."""

    def __init__(self, username: str = "owner", password: str = "pa55word", ltm: float = 600,
                 beg: Callable[[], float] = lambda: 1_700_000_000.0) -> None:
        self.username = username
        self.password = password
        self.ltm = ltm
        self.beg = beg
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[httpx.Request] = []
        self.tokens: set[str] = set()
        self.logins = 0
        self.login_attempts = 0
        self.rejected = 0  # protected requests answered 401
        self.expire_next_nonces = 0  # answer "Nonce expired." to this many logins
        self._counter = itertools.count(1)
        self.issued_nonces: list[str] = []

    def client(self, password: str | None = None, **kw: Any) -> WebApiClient:
        """A client for this meter (with ``password`` instead of the right one if given)."""
        kw.setdefault("transport", httpx.MockTransport(self.handle))
        secret = Secret(self.password if password is None else password)
        return WebApiClient("m1", URL, self.username, secret, **kw)

    def route(self, method: str, path: str, handler: Route | Any) -> None:
        self.routes[(method, path)] = handler if callable(handler) else (lambda _r: reply(handler))

    def challenge(self) -> httpx.Response:
        nonce = f"nonce-{next(self._counter)}"
        self.issued_nonces.append(nonce)
        return reply({"rlm": REALM, "nnc": nonce, "error": "Authentication required."}, 401)

    def requests_to(self, path: str, method: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests
                if r.url.path == path and (method is None or r.method == method)]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/auth/unauthorized":
            return self.challenge()
        if path == "/api/auth/login":
            return self._login(json.loads(request.content))
        if not self._authorized(request):
            self.rejected += 1
            return self.challenge()
        if path == "/api/auth/logout":
            self.tokens.discard(request.headers["Authorization"].split(" ", 1)[1])
            return reply({"status": "OK"})
        handler = self.routes.get((request.method, path))
        if handler is None:
            return reply({"error": f"unknown path {path}"})
        return handler(request)

    def _authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.tokens

    def _login(self, body: dict[str, str]) -> httpx.Response:
        self.login_attempts += 1
        if body["nnc"] not in self.issued_nonces:
            return reply({"error": "Nonce expired."})
        if self.expire_next_nonces > 0:
            self.expire_next_nonces -= 1
            return reply({"error": "Nonce expired."})
        ha1 = hashlib.md5(f"{self.username}:{REALM}:{self.password}".encode()).hexdigest()
        expected = hashlib.md5(f"{ha1}:{body['nnc']}:{body['cnnc']}".encode()).hexdigest()
        if body["usr"] != self.username or body["hash"] != expected:
            return reply({"error": "Invalid credentials."})
        self.logins += 1
        token = make_jwt({"beg": self.beg(), "ltm": self.ltm, "usr": body["usr"],
                          "n": next(self._counter)})
        self.tokens.add(token)
        return reply({"jwt": token})
