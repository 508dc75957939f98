"""The eGauge digest login (egauge-webapi §1) and the JWT it yields.

``GET /auth/unauthorized`` answers 401 with a realm and a server nonce; the client answers
``POST /auth/login`` with ``md5(md5(usr:rlm:pwd):nnc:cnnc)`` and receives a JWT whose payload
carries ``beg`` (issue time) and ``ltm`` (lifetime). The token is renewed before it runs
out, measured on the local clock from the moment of the login (the meter's clock may be
skewed), and a token the meter rejects is replaced by exactly one login however many
requests noticed it (a lock plus a token generation counter). A refused login suspends
further logins for a growing delay, so a wrong password never turns into a login storm.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from gateway.errors import AuthError, MeterError, MeterProtocolError, NotAnEgauge
from gateway.meter.channel import Channel, Reply, parse_json
from gateway.secret import Secret

log = structlog.get_logger(__name__)

DEFAULT_LIFETIME_S = 600.0  # the documented typical token lifetime, when ltm is unreadable
NONCE_EXPIRED = "Nonce expired."
NONCE_RETRIES = 2  # fresh nonces fetched after "Nonce expired." before giving up


def digest_hash(username: str, realm: str, password: str, nonce: str, cnonce: str) -> str:
    """``md5_hex(md5_hex("usr:rlm:pwd") + ":nnc:cnnc")``, lowercase hex."""
    ha1 = hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False)
    outer = f"{ha1.hexdigest()}:{nonce}:{cnonce}".encode()
    return hashlib.md5(outer, usedforsecurity=False).hexdigest()


def jwt_claims(jwt: str) -> dict[str, Any]:
    """The payload of a JWT (base64url JSON, the signature is not checked); {} if unreadable."""
    parts = jwt.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = parse_json(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_lifetime(jwt: str) -> float | None:
    """The ``ltm`` claim in seconds, or None when the token does not say."""
    ltm = jwt_claims(jwt).get("ltm")
    if isinstance(ltm, int | float) and not isinstance(ltm, bool) and 0 < ltm < math.inf:
        return float(ltm)
    return None


def renewal_margin(lifetime_s: float) -> float:
    """How long before expiry a token is renewed: 10 % of the lifetime, at most 60 s and
    at least 1 s (meters state ``beg`` in whole seconds), but never half the lifetime."""
    return min(60.0, max(0.1 * lifetime_s, min(1.0, 0.5 * lifetime_s)))


@dataclass(frozen=True, slots=True)
class Challenge:
    """A realm and server nonce from a 401 reply."""

    realm: str
    nonce: str

    def __repr__(self) -> str:
        return f"Challenge(realm={self.realm!r})"


def parse_challenge(response: Reply) -> Challenge | None:
    """The ``{rlm, nnc}`` of a 401 reply, or None when it carries none."""
    try:
        body = parse_json(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    realm, nonce = body.get("rlm"), body.get("nnc")
    if isinstance(realm, str) and isinstance(nonce, str) and nonce:
        return Challenge(realm, nonce)
    return None


@dataclass(frozen=True, slots=True)
class Token:
    """A JWT and when to renew it (local clock). ``generation`` counts logins."""

    bearer: Secret
    generation: int
    renew_at: float
    expires_at: float


class LoginBackoff:
    """After a refused login, further logins are refused locally for a growing delay."""

    def __init__(self, clock: Callable[[], float], first_s: float = 2.0, max_s: float = 300.0):
        self._clock = clock
        self._first = first_s
        self._max = max_s
        self._delay = 0.0
        self._until = 0.0

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    def failed(self) -> float:
        self._delay = self._first if self._delay == 0 else min(self._max, self._delay * 2)
        self._until = self._clock() + self._delay
        return self._delay

    def succeeded(self) -> None:
        self._delay = 0.0
        self._until = 0.0


class Session:
    """Holds one meter's token: logs in, renews, re-logs in once per rejected generation."""

    def __init__(
        self,
        channel: Channel,
        username: str,
        password: Secret,
        *,
        clock: Callable[[], float],
        backoff: LoginBackoff | None = None,
    ) -> None:
        self._channel = channel
        self._username = username
        self._password = password
        self._clock = clock
        self._backoff = backoff or LoginBackoff(clock)
        self._lock = asyncio.Lock()
        self._token: Token | None = None
        self._generation = 0
        self.logins = 0
        self.login_failures = 0

    @property
    def meter(self) -> str:
        return self._channel.meter

    @property
    def token(self) -> Token | None:
        return self._token

    async def current(self) -> Token:
        """A token that is not due for renewal, logging in (once, shared) when needed."""
        token = self._token
        if token is not None and self._clock() < token.renew_at:
            return token
        async with self._lock:
            token = self._token
            if token is not None and self._clock() < token.renew_at:
                return token
            return await self._login(None, renewing=token is not None)

    async def replace(self, rejected: Token, challenge: Challenge | None) -> Token:
        """The meter rejected ``rejected``: log in again unless another request already did."""
        async with self._lock:
            token = self._token
            if token is not None and token.generation != rejected.generation:
                return token
            self._token = None
            log.info("meter_token_rejected", meter=self.meter, generation=rejected.generation)
            return await self._login(challenge, renewing=False)

    async def logout(self) -> None:
        """``GET /auth/logout`` with the current token, if any; failures are only logged."""
        async with self._lock:
            token, self._token = self._token, None
            if token is None or self._clock() >= token.expires_at:
                return
            try:
                response = await self._channel.send("GET", "/auth/logout", bearer=token.bearer)
                self._channel.decode(response, "GET /auth/logout")
            except MeterError as exc:  # a failed logout must not mask the close
                log.warning("meter_logout_failed", meter=self.meter, error=str(exc))
                return
            log.info("meter_logout", meter=self.meter)

    async def _login(self, challenge: Challenge | None, *, renewing: bool) -> Token:
        wait = self._backoff.remaining()
        if wait > 0:
            raise AuthError(
                self.meter,
                f"login suspended for another {wait:.1f} s after the meter refused the credentials",
            )
        for attempt in range(1, NONCE_RETRIES + 2):
            if challenge is None:
                challenge = await self._challenge()
            log.info("meter_login", meter=self.meter, url=self._channel.api, attempt=attempt)
            started = self._clock()
            jwt = await self._post_login(challenge)
            if jwt is not None:
                return self._accept(jwt, started, renewing)
            log.info("meter_nonce_expired", meter=self.meter, attempt=attempt)
            challenge = None
        raise self._refused(f"the meter called {NONCE_RETRIES + 1} fresh nonces expired")

    async def _challenge(self) -> Challenge:
        response = await self._channel.send("GET", "/auth/unauthorized")
        challenge = parse_challenge(response) if response.status_code == 401 else None
        if challenge is None:
            raise NotAnEgauge(
                self.meter,
                f"GET /api/auth/unauthorized answered HTTP {response.status_code} "
                "without an eGauge login challenge (rlm, nnc)",
            )
        return challenge

    async def _post_login(self, challenge: Challenge) -> Secret | None:
        """The JWT, or None when the nonce expired; a refusal raises AuthError."""
        cnonce = secrets.token_hex(16)
        body = {
            "rlm": challenge.realm,
            "usr": self._username,
            "nnc": challenge.nonce,
            "cnnc": cnonce,
            "hash": digest_hash(
                self._username, challenge.realm, self._password.reveal(), challenge.nonce, cnonce
            ),
        }
        response = await self._channel.send("POST", "/auth/login", body=body)
        try:
            reply = parse_json(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise NotAnEgauge(
                self.meter,
                f"POST /api/auth/login answered HTTP {response.status_code} without JSON",
            ) from exc
        if not isinstance(reply, dict):
            raise NotAnEgauge(self.meter, "POST /api/auth/login answered no JSON object")
        error = reply.get("error")
        if error == NONCE_EXPIRED:
            return None
        jwt = reply.get("jwt")
        if response.status_code == 200 and not error and isinstance(jwt, str) and jwt:
            return Secret(jwt)
        if error or response.status_code in (400, 401, 403):
            raise self._refused(str(error or f"HTTP {response.status_code}"))
        raise MeterProtocolError(self.meter, "expected a non-empty string", field="jwt")

    def _accept(self, jwt: Secret, started: float, renewing: bool) -> Token:
        lifetime = token_lifetime(jwt.reveal())
        if lifetime is None:
            log.warning(
                "meter_token_lifetime_unknown", meter=self.meter, assumed_s=DEFAULT_LIFETIME_S
            )
            lifetime = DEFAULT_LIFETIME_S
        self._generation += 1
        self.logins += 1
        self._backoff.succeeded()
        expires = started + lifetime
        token = Token(jwt, self._generation, expires - renewal_margin(lifetime), expires)
        self._token = token
        if renewing:
            log.info("meter_token_renewed", meter=self.meter, lifetime_s=lifetime)
        else:
            log.info("meter_logged_in", meter=self.meter, lifetime_s=lifetime)
        return token

    def _refused(self, reason: str) -> AuthError:
        self.login_failures += 1
        delay = self._backoff.failed()
        log.warning("meter_login_failed", meter=self.meter, reason=reason, retry_after_s=delay)
        return AuthError(self.meter, f"login refused: {reason} (next attempt in {delay:g} s)")
