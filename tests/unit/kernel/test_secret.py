"""The secret vocabulary (gateway.secret): one list of secret-looking names, applied at any
depth of dicts and lists, plus tokens inside texts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.secret import (
    MASK,
    MAX_DEPTH,
    SECRET_WORDS,
    Secret,
    is_secret_name,
    mask_text,
    masked,
    masked_at,
    masked_member,
)

JWT = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJiZWciOjE3MDAwMDAwMDAsImx0bSI6NjAwfQ."
       "c2lnbmF0dXJlLXNpZ25hdHVyZQ")


@pytest.mark.parametrize("name", ["password", "Password", "mqtt_passwd", "pwd", "PWD",
                                  "client_secret", "access_token", "jwt", "hash", "api_key",
                                  "certificate", "Authorization", "authorisation", "cookie",
                                  "credential", "bearer", "mailpass"])
def test_secret_looking_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["user", "hostname", "path", "value", "relay", "state",
                                  "transaction", "meter", "device", "sn", "mask", "author"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_the_issue_words_are_in_the_vocabulary() -> None:
    for word in ("pwd", "pass", "authorization", "hash", "token", "secret", "key", "jwt"):
        assert word in SECRET_WORDS


def test_masked_reaches_every_depth_of_dicts_and_lists() -> None:
    value = {
        "pwd": "S1",
        "nested": {"password": "S2", "list": [{"authorization": "Bearer S3"}, "plain"]},
        "deeper": [[{"Authorization": "S4", "keep": 5}]],
        "tuple": ({"api_key": "S5"},),
        "note": "password is only a word here",
        "number": 7,
    }
    shown = masked(value)
    assert shown == {
        "pwd": MASK,
        "nested": {"password": MASK, "list": [{"authorization": MASK}, "plain"]},
        "deeper": [[{"Authorization": MASK, "keep": 5}]],
        "tuple": [{"api_key": MASK}],
        "note": "password is only a word here",
        "number": 7,
    }
    text = json.dumps(shown)
    for secret in ("S1", "S2", "S3", "S4", "S5"):
        assert secret not in text
    assert value["pwd"] == "S1"  # a copy: the original is untouched


def test_a_whole_value_under_a_secret_name_is_masked_whatever_its_type() -> None:
    assert masked({"password": {"a": 1}, "token": 1234, "hash": None, "key": True}) == {
        "password": MASK, "token": MASK, "hash": MASK, "key": MASK}


def test_keep_scalars_keeps_numbers_and_booleans_under_secret_names() -> None:
    shown = masked({"token_lifetime_s": 600, "password_set": True, "hash": None,
                    "password": "p"}, keep_scalars=True)
    assert shown == {"token_lifetime_s": 600, "password_set": True, "hash": None,
                     "password": MASK}
    assert masked_member("token_lifetime_s", 600, keep_scalars=True) == 600
    assert masked_member("pwd", "p") == MASK
    assert masked_member("user", {"pwd": "p"}) == {"pwd": MASK}


def test_secrets_and_tokens_inside_values() -> None:
    assert masked([Secret("s"), f"got {JWT}", "Authorization: Bearer abc.def"]) == [
        MASK, "got ***", "Authorization: Bearer ***"]
    assert mask_text("Basic dXNlcjpwdw==") == "Basic ***"
    assert mask_text("meter-north.building-a.example") == "meter-north.building-a.example"


def test_too_deep_is_masked_as_a_whole() -> None:
    value: Any = {"password": "deep"}
    for _ in range(MAX_DEPTH + 5):
        value = {"v": [value]}
    assert "deep" not in json.dumps(masked(value))


@pytest.mark.parametrize("path", ["/user/owner/hash", "/push/password", "/net/http/certificate",
                                  "/var/global/api_key", "/remote/0/pwd"])
def test_masked_at_masks_everything_under_a_secret_path(path: str) -> None:
    assert masked_at(path, "s3cret") == MASK
    assert masked_at(path, {"a": 1}) == MASK


def test_masked_at_masks_members_of_an_ordinary_path() -> None:
    assert masked_at("/net/hostname", "meter-7") == "meter-7"
    assert masked_at("/remote/vault", {"pwd": "x", "host": "h"}) == {"pwd": MASK, "host": "h"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "pwd", "Password", "x_token", "n"]), children,
                      max_size=4),
    max_leaves=30,
)


@given(json_values, st.text(alphabet="xyz", min_size=12, max_size=12))
def test_no_value_under_a_secret_name_survives(value: Any, secret: str) -> None:
    planted = {"outer": [value, {"Authorization": secret, "inner": {"pwd": secret}}]}
    assert secret not in json.dumps(masked(planted))
