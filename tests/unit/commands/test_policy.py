"""Policy: which permission each commands.allow entry grants, and secret masking."""

from __future__ import annotations

import pytest

from gateway.commands import Need, Policy
from gateway.commands.redaction import MASK, mask, mask_at
from gateway.errors import ConfigError

EVERY_NEED = [
    Need("reboot"),
    Need("relay"),
    Need("ctrl/devices"),
    Need("cmd", "clear"),
    Need("cmd", "reboot"),
    Need("ctrl", "relay.close"),
    Need("config", "/net/hostname"),
    Need("config-read", "/net/hostname"),
    Need("config", "/"),
]


@pytest.mark.parametrize("need", EVERY_NEED, ids=str)
def test_an_empty_policy_grants_nothing(need: Need) -> None:
    assert not Policy().allows(need)


@pytest.mark.parametrize(
    ("entry", "granted"),
    [
        ("reboot", {Need("reboot")}),
        ("relay", {Need("relay")}),
        ("ctrl/devices", {Need("ctrl/devices")}),
        ("cmd:clear", {Need("cmd", "clear")}),
        ("cmd:reboot", {Need("cmd", "reboot")}),
        ("ctrl:relay.close", {Need("ctrl", "relay.close")}),
        ("config:/net/hostname", {Need("config", "/net/hostname"),
                                  Need("config-read", "/net/hostname")}),
        ("config-read:/net", {Need("config-read", "/net/hostname")}),
        ("config:/", {Need("config", "/net/hostname"), Need("config-read", "/net/hostname"),
                      Need("config", "/")}),
    ],
)
def test_each_entry_grants_exactly_its_own_permission(entry: str, granted: set[Need]) -> None:
    policy = Policy([entry])
    assert {n for n in EVERY_NEED if policy.allows(n)} == granted


def test_a_config_entry_covers_the_path_and_everything_below_it_only() -> None:
    policy = Policy(["config:/net"])
    assert policy.allows(Need("config", "/net"))
    assert policy.allows(Need("config", "/net/ipv4/address"))
    assert not policy.allows(Need("config", "/network"))
    assert not policy.allows(Need("config", "/"))
    assert not policy.allows(Need("config-read", "/time/zone"))


def test_config_read_does_not_allow_writing() -> None:
    policy = Policy(["config-read:/"])
    assert policy.allows(Need("config-read", "/user/owner"))
    assert not policy.allows(Need("config", "/net/hostname"))


def test_ctrl_methods_match_exactly() -> None:
    policy = Policy(["ctrl:relay.close"])
    assert not policy.allows(Need("ctrl", "close"))
    assert not policy.allows(Need("ctrl", "relay.open"))
    assert not policy.allows(Need("ctrl", "relay.closer"))


def test_bad_entries_are_a_config_error_naming_every_one() -> None:
    with pytest.raises(ConfigError) as caught:
        Policy(["reboot", "reboot:now", "config:net", "cmd:Bad Name"])
    text = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 3
    for entry in ("reboot:now", "config:net", "cmd:Bad Name"):
        assert repr(entry) in text


def test_mask_hides_secret_looking_members_at_any_depth() -> None:
    value = {"user": "a", "password": "p1", "nested": [{"mailpass": "p2", "api_key": "k"}],
             "Hash": "h", "note": "password is not a key here"}
    assert mask(value) == {"user": "a", "password": MASK,
                           "nested": [{"mailpass": MASK, "api_key": MASK}],
                           "Hash": MASK, "note": "password is not a key here"}


@pytest.mark.parametrize("path", ["/user/owner/hash", "/push/password", "/net/http/certificate",
                                  "/var/global/api_key"])
def test_mask_at_hides_values_under_secret_paths(path: str) -> None:
    assert mask_at(path, "s3cret") == MASK
    assert mask_at(path, {"a": 1}) == MASK


def test_mask_at_keeps_ordinary_values() -> None:
    assert mask_at("/net/hostname", "meter-7") == "meter-7"
