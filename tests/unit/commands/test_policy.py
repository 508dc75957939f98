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
    Need("capture"),
    Need("ctid"),
    Need("ctid-scan"),
    Need("ctid-flash"),
    Need("alert-ack"),
    Need("log", "system"),
    Need("log", "alert"),
    Need("log", "lua/main"),
    Need("lua-read", "mode"),
    Need("lua-read", "*"),
    Need("lua", "mode"),
    Need("api-read", "/providers/push"),
    Need("api-read", "/config/var/global"),
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
        ("capture", {Need("capture")}),
        ("ctid", {Need("ctid")}),
        ("ctid-scan", {Need("ctid-scan")}),
        ("ctid-flash", {Need("ctid-flash")}),
        ("alert-ack", {Need("alert-ack")}),
        ("log:system", {Need("log", "system")}),
        ("log:lua", {Need("log", "lua/main")}),
        ("log:lua/main", {Need("log", "lua/main")}),
        ("lua-read:mode", {Need("lua-read", "mode")}),
        ("lua:mode", {Need("lua-read", "mode"), Need("lua", "mode")}),
        ("lua-read:*", {Need("lua-read", "mode"), Need("lua-read", "*")}),
        ("lua:*", {Need("lua-read", "mode"), Need("lua-read", "*"), Need("lua", "mode")}),
        ("api-read:/providers", {Need("api-read", "/providers/push")}),
        ("api-read:/", {Need("api-read", "/providers/push"),
                        Need("api-read", "/config/var/global")}),
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


def test_an_api_read_entry_covers_its_subtree_only() -> None:
    policy = Policy(["api-read:/config/var"])
    assert policy.allows(Need("api-read", "/config/var/global"))
    assert not policy.allows(Need("api-read", "/config/variable"))
    assert not policy.allows(Need("api-read", "/config"))
    assert not policy.allows(Need("config-read", "/var/global"))


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
