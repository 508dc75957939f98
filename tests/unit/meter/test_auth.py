"""The digest login, JWT lifetime, renewal, re-login and login backoff (MockTransport)."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from structlog.testing import capture_logs

from gateway.errors import AuthError, MeterError, NotAnEgauge
from gateway.meter.auth import LoginBackoff, digest_hash, jwt_claims, renewal_margin, token_lifetime
from tests.support.fake_meter import REALM, FakeMeter, make_jwt, reply


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_digest_hash_matches_the_documented_formula() -> None:
    ha1 = hashlib.md5(b"owner:eGauge Administration:s3cret").hexdigest()
    expected = hashlib.md5(f"{ha1}:NONCE123:c0ffee".encode()).hexdigest()
    assert digest_hash("owner", "eGauge Administration", "s3cret", "NONCE123", "c0ffee") == expected
    assert expected == expected.lower()
    assert len(expected) == 32


def test_jwt_payload_lifetime_is_decoded() -> None:
    token = make_jwt({"beg": 1_700_000_000, "ltm": 600, "usr": "owner"})
    assert jwt_claims(token)["beg"] == 1_700_000_000
    assert token_lifetime(token) == 600.0
    # a payload whose base64url needs padding restored
    odd = make_jwt({"beg": 1, "ltm": 42.5, "x": "ab"})
    assert token_lifetime(odd) == 42.5


@pytest.mark.parametrize("token", ["not-a-jwt", "a.!!!.c", "a.bnVsbA.c", make_jwt({"beg": 1})])
def test_jwt_without_a_lifetime_gives_none(token: str) -> None:
    assert token_lifetime(token) is None


def test_renewal_margin_is_a_tenth_between_one_and_sixty_seconds() -> None:
    assert renewal_margin(600) == 60
    assert renewal_margin(3600) == 60
    assert renewal_margin(100) == pytest.approx(10.0)
    assert renewal_margin(5) == pytest.approx(1.0)
    assert renewal_margin(1) == pytest.approx(0.5)


async def test_login_sends_the_digest_of_the_served_nonce_and_uses_the_bearer() -> None:
    fake = FakeMeter(password="s3cret")
    fake.route("POST", "/api/cmd/none", {"status": "OK"})
    async with fake.client() as client:
        assert await client.cmd("none") == {"status": "OK"}
    login = json.loads(fake.requests_to("/api/auth/login")[0].content)
    ha1 = hashlib.md5(f"owner:{REALM}:s3cret".encode()).hexdigest()
    assert login["rlm"] == REALM
    assert login["usr"] == "owner"
    assert login["nnc"] == fake.issued_nonces[0]
    expected = hashlib.md5(f"{ha1}:{login['nnc']}:{login['cnnc']}".encode()).hexdigest()
    assert login["hash"] == expected
    assert "pwd" not in login
    served = fake.requests_to("/api/cmd/none")
    assert served
    assert served[0].headers["Authorization"].startswith("Bearer ey")
    assert fake.requests_to("/api/auth/logout"), "close logs out"
    assert fake.tokens == set()


async def test_token_is_renewed_before_expiry_on_the_local_clock_despite_meter_skew() -> None:
    clock = Clock(1000.0)
    # the meter's clock is far ahead: beg is in the gateway's future
    fake = FakeMeter(ltm=600, beg=lambda: 99_999_999.0)
    fake.route("POST", "/api/cmd/ping", {"status": "OK"})
    client = fake.client(clock=clock)
    with capture_logs() as logs:
        await client.cmd("ping")
        clock.now = 1000.0 + 600 - 60 - 1  # just before the renewal margin
        await client.cmd("ping")
        assert fake.logins == 1
        clock.now = 1000.0 + 600 - 60 + 1  # inside the margin, still before expiry
        await client.cmd("ping")
        assert fake.logins == 2
    await client.aclose()
    assert client.logins == 2
    assert any(e["event"] == "meter_token_renewed" for e in logs)
    assert fake.rejected == 0  # the renewal happened before the meter rejected anything


async def test_a_rejected_token_is_replaced_once_using_the_nonce_of_the_401() -> None:
    fake = FakeMeter()
    fake.route("POST", "/api/cmd/ping", {"status": "OK"})
    async with fake.client() as client:
        await client.cmd("ping")
        fake.tokens.clear()  # the meter revokes every token (e.g. after a reboot)
        unauthorized_before = len(fake.requests_to("/api/auth/unauthorized"))
        assert await client.cmd("ping") == {"status": "OK"}
        assert fake.logins == 2
        assert fake.rejected == 1
        assert len(fake.requests_to("/api/auth/unauthorized")) == unauthorized_before
        second = json.loads(fake.requests_to("/api/auth/login")[-1].content)
        assert second["nnc"] == fake.issued_nonces[-1]  # the nonce the 401 carried


async def test_expired_nonce_fetches_a_fresh_one_and_retries() -> None:
    fake = FakeMeter()
    fake.expire_next_nonces = 1
    fake.route("POST", "/api/cmd/ping", {"status": "OK"})
    with capture_logs() as logs:
        async with fake.client() as client:
            await client.cmd("ping")
    assert fake.login_attempts == 2
    assert fake.logins == 1
    assert len(fake.requests_to("/api/auth/unauthorized")) == 2
    assert any(e["event"] == "meter_nonce_expired" for e in logs)


async def test_a_privilege_401_after_a_fresh_login_is_an_auth_error() -> None:
    fake = FakeMeter()
    fake.route("POST", "/api/cmd/reboot", lambda _r: fake.challenge())
    fake.route("POST", "/api/cmd/ping", {"status": "OK"})
    async with fake.client() as client:
        with pytest.raises(AuthError, match="refused a fresh token"):
            await client.cmd("reboot")
        assert fake.logins == 2  # the first login and exactly one re-login
        for _ in range(5):
            with pytest.raises(AuthError, match="not permitted"):
                await client.cmd("reboot")
        assert fake.logins == 2  # no login per refused request
        assert await client.cmd("ping") == {"status": "OK"}
        fake.tokens.clear()  # a real revocation is still handled
        assert await client.cmd("ping") == {"status": "OK"}
        assert fake.logins == 3


async def test_bad_credentials_back_off_without_contacting_the_meter() -> None:
    clock = Clock(5000.0)
    fake = FakeMeter(password="right")
    fake.route("POST", "/api/cmd/ping", {"status": "OK"})
    client = fake.client(clock=clock, login_backoff=LoginBackoff(clock, first_s=2, max_s=8))
    fake.password = "changed-on-the-meter"
    with pytest.raises(AuthError, match="login refused: Invalid credentials"):
        await client.cmd("ping")
    for _ in range(20):
        with pytest.raises(AuthError, match="suspended"):
            await client.cmd("ping")
    assert fake.login_attempts == 1
    clock.now += 2.1
    with pytest.raises(AuthError, match="login refused"):
        await client.cmd("ping")
    assert fake.login_attempts == 2
    clock.now += 2.1  # the delay doubled to 4 s
    with pytest.raises(AuthError, match="suspended"):
        await client.cmd("ping")
    assert fake.login_attempts == 2
    fake.password = "right"
    clock.now += 2.0
    assert await client.cmd("ping") == {"status": "OK"}
    assert client.login_failures == 2
    assert client.logins == 1
    await client.aclose()


def not_egauge(status: int, body: bytes, ctype: str) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda _r: httpx.Response(status, content=body, headers={"Content-Type": ctype})
    )


@pytest.mark.parametrize(
    ("status", "body", "ctype"),
    [
        (404, b"<html>Not Found</html>", "text/html"),
        (200, b"<html>router login</html>", "text/html"),
        (401, b'{"error": "Authentication required."}', "application/json"),
        (401, b"Unauthorized", "text/plain"),
    ],
)
async def test_hosts_that_do_not_challenge_like_an_egauge_are_named(
    status: int, body: bytes, ctype: str
) -> None:
    fake = FakeMeter()
    async with fake.client(transport=not_egauge(status, body, ctype)) as client:
        with pytest.raises(NotAnEgauge, match=r"meter m1: .*without an eGauge login challenge"):
            await client.read()


async def test_login_reply_without_json_is_not_an_egauge() -> None:
    fake = FakeMeter()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/auth/login":
            return httpx.Response(200, content=b"<html>")
        return fake.handle(request)

    async with fake.client(transport=httpx.MockTransport(handle)) as client:
        with pytest.raises(NotAnEgauge, match="auth/login"):
            await client.read()


async def test_no_secret_in_logs_exceptions_or_reprs() -> None:
    password = "Sup3r-Secret-Pw"
    fake = FakeMeter(password=password)
    fake.route("POST", "/api/cmd/ping", {"status": "OK"})
    fake.route("POST", "/api/cmd/boom", lambda _r: reply({"error": "it broke"}))
    jwts: set[str] = set()
    errors: list[MeterError] = []
    with capture_logs() as logs:
        async with fake.client() as client:
            await client.cmd("ping")
            jwts |= fake.tokens
            fake.tokens.clear()  # revoked: one re-login
            await client.cmd("ping")
            jwts |= fake.tokens
            reprs = [repr(client), repr(client._session.token), str(client._session.token)]
            with pytest.raises(MeterError) as boom:
                await client.cmd("boom")
            errors.append(boom.value)
        other = FakeMeter(password="the-meter-has-another")
        async with other.client(password=password) as wrong:
            for _ in range(2):  # refused, then suspended
                with pytest.raises(AuthError) as refused:
                    await wrong.read()
                errors.append(refused.value)
    assert len(jwts) == 2
    assert len(errors) == 3
    assert fake.logins == 2
    assert any(e["event"] == "meter_login_failed" for e in logs)
    texts = [repr(e) for e in logs] + reprs
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    secrets = [password, *jwts, *(t.split(".")[1] for t in jwts)]
    for text in texts:
        for secret in secrets:
            assert secret not in text


async def test_close_skips_the_logout_of_an_expired_token() -> None:
    clock = Clock(1000.0)
    fake = FakeMeter(ltm=600)
    fake.route("POST", "/api/cmd/ping", {"status": "OK"})
    client = fake.client(clock=clock)
    await client.cmd("ping")
    clock.now += 601
    with capture_logs() as logs:
        await client.aclose()
    assert fake.requests_to("/api/auth/logout") == []
    assert not any(e["event"] == "meter_logout_failed" for e in logs)
