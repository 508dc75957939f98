"""Digest login, nonces and JWTs of one simulated meter (egauge-webapi §1).

Nonces and tokens are JWT-shaped (``header.payload.signature``, HMAC-SHA256 with a key of
this meter), so nothing but revocations needs to be remembered. A nonce lives
``nonce_lifetime_s``; a token carries ``beg`` (issue time, whole Unix seconds) and ``ltm``
(lifetime) and is valid until ``beg + ltm``, until logout, or until every token is revoked.
Login failures answer HTTP 200: ``{"error": "Nonce expired."}`` for a stale nonce and
``{"error": "Invalid credentials."}`` for a wrong user, realm, nonce or hash; a body that is
not a login object answers HTTP 400 ``{"error": "Bad Request"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping

from gateway.simulator.tree import Json

NONCE_EXPIRED = "Nonce expired."
INVALID_CREDENTIALS = "Invalid credentials."
PASSWORD_NEEDS_TLS = "Password login requires HTTPS."  # noqa: S105 -- an error text
_HEADER = base64.urlsafe_b64encode(b'{"typ":"JWT","alg":"HS256"}').rstrip(b"=").decode()
_DIGEST_KEYS = frozenset({"rlm", "usr", "nnc", "cnnc", "hash"})
_PASSWORD_KEYS = frozenset({"rlm", "usr", "pwd"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 -- the WebAPI's digest


def ha1(usr: str, rlm: str, pwd: str) -> str:
    return md5_hex(f"{usr}:{rlm}:{pwd}")


class Authority:
    """Issues and checks nonces and tokens against the meter's clock."""

    def __init__(self, realm: str, clock: Callable[[], float], nonce_lifetime_s: float,
                 token_lifetime_s: float) -> None:
        self.realm = realm
        self.clock = clock
        self.nonce_lifetime_s = nonce_lifetime_s
        self.token_lifetime_s = token_lifetime_s
        self.logins = 0
        self.login_failures = 0
        self._key = secrets.token_bytes(32)
        self._generation = 0
        self._nonce_floor = float("-inf")
        self._revoked: set[str] = set()
        self._nonce_cache: tuple[int, str] | None = None

    def _sign(self, payload: Mapping[str, object]) -> str:
        body = _HEADER + "." + _b64(json.dumps(payload, separators=(",", ":")).encode())
        sig = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return body + "." + _b64(sig)

    def _open(self, token: str) -> dict[str, Json] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        body = parts[0] + "." + parts[1]
        sig = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(sig, parts[2]):
            return None
        try:
            payload = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def nonce(self) -> str:
        """A fresh server nonce (one per second is enough: it is signed, not stored)."""
        now = self.clock()
        second = int(now)
        if self._nonce_cache is not None and self._nonce_cache[0] == second:
            return self._nonce_cache[1]
        nnc = self._sign({"t": now, "n": secrets.token_hex(8)})
        self._nonce_cache = (second, nnc)
        return nnc

    def nonce_state(self, nnc: str) -> str:
        """``ok``, ``expired`` or ``invalid``."""
        payload = self._open(nnc)
        if payload is None or not isinstance(payload.get("t"), (int, float)):
            return "invalid"
        issued = float(payload["t"])
        if issued <= self._nonce_floor or self.clock() > issued + self.nonce_lifetime_s:
            return "expired"
        return "ok"

    def issue(self, usr: str) -> str:
        lifetime = self.token_lifetime_s
        return self._sign({
            "beg": int(self.clock()), "ltm": int(lifetime) if lifetime == int(lifetime)
            else lifetime, "usr": usr, "rlm": self.realm, "gen": self._generation,
            "jti": secrets.token_hex(8),
        })

    def claims(self, token: str) -> dict[str, Json] | None:
        """The payload of a valid token, or None."""
        payload = self._open(token)
        if payload is None or payload.get("gen") != self._generation:
            return None
        beg, ltm = payload.get("beg"), payload.get("ltm")
        if not isinstance(beg, (int, float)) or not isinstance(ltm, (int, float)):
            return None
        if self.clock() >= beg + ltm or token.rpartition(".")[2] in self._revoked:
            return None
        return payload

    def revoke(self, token: str) -> None:
        self._revoked.add(token.rpartition(".")[2])

    def revoke_all(self) -> None:
        self._generation += 1
        self._revoked.clear()

    def expire_nonces(self) -> None:
        self._nonce_floor = self.clock()
        self._nonce_cache = None

    def login(self, body: Json, tls: bool, ha1_for: Callable[[str], str | None]
              ) -> tuple[int, dict[str, str]]:
        """Answer ``POST /auth/login``: ``(http status, reply object)``."""
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            return 400, {"error": "Bad Request"}
        keys = set(body)
        if keys >= _DIGEST_KEYS:
            state = self.nonce_state(body["nnc"])
            if state == "expired":
                return self._fail(NONCE_EXPIRED)
            stored = ha1_for(body["usr"]) if state == "ok" else None
            expected = md5_hex(f"{stored}:{body['nnc']}:{body['cnnc']}") if stored else ""
            ok = bool(stored) and hmac.compare_digest(expected.encode(), body["hash"].encode())
        elif keys >= _PASSWORD_KEYS:
            if not tls:
                return self._fail(PASSWORD_NEEDS_TLS)
            stored = ha1_for(body["usr"])
            ok = bool(stored) and hmac.compare_digest(
                str(stored).encode(), ha1(body["usr"], body["rlm"], body["pwd"]).encode())
        else:
            return 400, {"error": "Bad Request"}
        if not ok or body["rlm"] != self.realm:
            return self._fail(INVALID_CREDENTIALS)
        self.logins += 1
        return 200, {"jwt": self.issue(body["usr"])}

    def _fail(self, message: str) -> tuple[int, dict[str, str]]:
        self.login_failures += 1
        return 200, {"error": message}
