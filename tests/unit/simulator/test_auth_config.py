"""The simulator's login rules (injected clock) and configuration tree semantics."""

from __future__ import annotations

import hashlib

import pytest

from gateway.simulator import SimMeter
from gateway.simulator.authority import Authority
from gateway.simulator.reply import QueryError
from tests.support.simulator import ManualClock, digest_login_body

REALM = "eGauge Administration"
HA1 = hashlib.md5(f"owner:{REALM}:pw".encode()).hexdigest()


def users(usr: str) -> str | None:
    return HA1 if usr == "owner" else None


def challenge(auth: Authority) -> dict[str, str]:
    return {"rlm": auth.realm, "nnc": auth.nonce()}


def test_digest_login_issues_a_token_with_beg_and_ltm() -> None:
    clock = ManualClock(1_700_000_000.7)
    auth = Authority(REALM, clock, nonce_lifetime_s=60, token_lifetime_s=600)
    status, reply = auth.login(digest_login_body(challenge(auth), "owner", "pw"), False, users)
    assert status == 200
    claims = auth.claims(reply["jwt"])
    assert claims is not None
    assert (claims["beg"], claims["ltm"], claims["usr"], claims["rlm"]) == (
        1_700_000_000, 600, "owner", REALM)
    assert auth.logins == 1
    clock.advance(599.2)  # beg + ltm - 0.1
    assert auth.claims(reply["jwt"]) is not None
    clock.advance(0.1)
    assert auth.claims(reply["jwt"]) is None


def test_nonce_expires_after_its_lifetime() -> None:
    clock = ManualClock()
    auth = Authority(REALM, clock, nonce_lifetime_s=60, token_lifetime_s=600)
    stale = challenge(auth)
    clock.advance(60.5)
    assert auth.login(digest_login_body(stale, "owner", "pw"), False, users) == (
        200, {"error": "Nonce expired."})
    fresh = challenge(auth)
    assert fresh["nnc"] != stale["nnc"]
    assert "jwt" in auth.login(digest_login_body(fresh, "owner", "pw"), False, users)[1]
    held = challenge(auth)
    auth.expire_nonces()
    assert auth.nonce_state(held["nnc"]) == "expired"
    assert auth.logins == 1
    assert auth.login_failures == 1


@pytest.mark.parametrize(
    "body",
    [
        {"rlm": REALM, "usr": "owner", "nnc": "x.y.z", "cnnc": "1", "hash": "0" * 32},
        {"rlm": "Other", "usr": "owner", "nnc": "NONCE", "cnnc": "1", "hash": "HASH"},
        {"rlm": REALM, "usr": "nobody", "nnc": "NONCE", "cnnc": "1", "hash": "HASH"},
    ],
)
def test_bad_credentials_answer_200_with_an_error(body: dict[str, str]) -> None:
    auth = Authority(REALM, ManualClock(), 60, 600)
    good = digest_login_body(challenge(auth), "owner", "pw")
    body = {k: good[k] if v in ("NONCE", "HASH") else v for k, v in body.items()}
    assert auth.login(body, False, users) == (200, {"error": "Invalid credentials."})
    wrong_pw = digest_login_body(challenge(auth), "owner", "not-pw")
    assert auth.login(wrong_pw, False, users) == (200, {"error": "Invalid credentials."})
    assert auth.logins == 0


@pytest.mark.parametrize("body", [None, [], "x", {"usr": "owner"}, {"rlm": 1, "usr": "owner",
                                                                   "pwd": "pw"}])
def test_malformed_login_bodies_answer_400(body: object) -> None:
    auth = Authority(REALM, ManualClock(), 60, 600)
    assert auth.login(body, True, users) == (400, {"error": "Bad Request"})


def test_password_login_only_over_tls() -> None:
    auth = Authority(REALM, ManualClock(), 60, 600)
    body = {"rlm": REALM, "usr": "owner", "pwd": "pw"}
    assert auth.login(body, False, users) == (200, {"error": "Password login requires HTTPS."})
    assert "jwt" in auth.login(body, True, users)[1]
    assert auth.login({**body, "pwd": "nope"}, True, users)[1] == {"error": "Invalid credentials."}


def test_revocation_one_and_all() -> None:
    auth = Authority(REALM, ManualClock(), 60, 600)
    a, b = auth.issue("owner"), auth.issue("owner")
    auth.revoke(a)
    assert auth.claims(a) is None
    assert auth.claims(b) is not None
    auth.revoke_all()
    assert auth.claims(b) is None
    assert auth.claims(auth.issue("owner")) is not None
    assert auth.claims(b[:-2] + "AA") is None  # forged signature


def test_config_put_post_delete_and_etag() -> None:
    meter = SimMeter(clock=ManualClock())
    store = meter.config
    tag = store.etag
    store.write("PUT", ["net", "hostname"], "meter-7")
    assert store.get(["net", "hostname"]) == "meter-7"
    assert meter.hostname == "meter-7"
    assert store.etag != tag
    assert not store.matches(tag)
    assert store.matches(store.etag)
    assert store.matches("*")
    store.write("POST", ["net", "ntp", "server"], ["ntp2.example"])
    assert store.get(["net", "ntp", "server"]) == ["pool.ntp.org", "ntp2.example"]
    store.write("POST", ["var", "global"], {"billing.start_day": "15", "site": "north"})
    assert store.get(["var", "global", "site"]) == "north"
    assert store.get(["var", "global", "default.currency_symbol"]) == "$"
    store.write("PUT", ["var", "global"], {"only": "this"})
    assert store.get(["var", "global"]) == {"only": "this"}
    store.write("DELETE", ["var", "global"], None)
    assert store.get(["var", "global", "billing.start_day"]) == "1"
    store.write("DELETE", ["net", "hostname"], None)
    assert store.get(["net", "hostname"]) == "eGauge-SIM0001"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", ["net", "nohost"], "x"),
        ("PUT", ["nothing", "here"], 1),
        ("PUT", ["net", "hostname"], 42),
        ("PUT", ["net", "hostname"], "bad name!"),
        ("PUT", ["net"], {"hostname": "ok", "bogus": 1}),
        ("PUT", ["db", "epoch"], "yesterday"),
        ("PUT", ["time", "zone"], "Mars/Olympus"),
        ("POST", ["var", "global"], {"x": 1}),
        ("PUT", ["user", "owner", "hash"], "not-hex"),
        ("PUT", ["register", "physical", "Grid", "type"], "V"),
        ("DELETE", ["net", "missing"], None),
    ],
)
def test_bad_config_writes_change_nothing(method: str, path: list[str], body: object) -> None:
    store = SimMeter(clock=ManualClock()).config
    before, tag = store.get([]), store.etag
    with pytest.raises(QueryError):
        store.write(method, path, body)
    assert store.get([]) == before
    assert store.etag == tag


def test_write_only_leaves_are_never_returned_but_take_effect() -> None:
    meter = SimMeter(clock=ManualClock(), password="old")
    assert "hash" not in meter.config.get(["user", "owner"])
    assert "certificate" not in meter.config.get(["net", "http"])
    with pytest.raises(QueryError):
        meter.config.get(["user", "owner", "hash"])
    new_ha1 = hashlib.md5(f"owner:{REALM}:new".encode()).hexdigest()
    meter.config.write("PUT", ["user", "owner", "hash"], new_ha1)
    assert meter.ha1_for("owner") == new_ha1
    assert "hash" not in str(meter.config.get([]))
