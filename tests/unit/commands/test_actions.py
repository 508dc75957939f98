"""parse_action: each action's fields checked, the permission it needs (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.commands import ACTIONS, Need, parse_action
from gateway.commands.envelope import json_kind
from gateway.errors import CommandError


@pytest.mark.parametrize(
    ("action", "payload", "need"),
    [
        ("reboot", {}, Need("reboot")),
        ("cmd", {"name": "clear", "body": "excess"}, Need("cmd", "clear")),
        ("cmd", {"name": "reboot"}, Need("cmd", "reboot")),
        ("relay", {"relay": 1, "state": "closed"}, Need("relay")),
        ("relay", {"mask": 5, "state": "open", "device": {"model": "PRM3", "sn": "7"}},
         Need("relay")),
        ("config/get", {"path": "/net/hostname"}, Need("config-read", "/net/hostname")),
        ("config/set", {"path": "/net/hostname", "value": "m7"}, Need("config", "/net/hostname")),
        ("config/set", {"path": "/var/global", "value": {"a": "1"}, "merge": True},
         Need("config", "/var/global")),
        ("ctrl/call", {"device": {"model": "PRM3"}, "method": "relay.close", "args": [0]},
         Need("ctrl", "relay.close")),
        ("ctrl/devices", {}, Need("ctrl/devices")),
        ("ctrl/devices", {"device": {"interface": ["relay"]}}, Need("ctrl/devices")),
    ],
)
def test_valid_requests_need_their_permission(action: str, payload: dict[str, Any],
                                              need: Need) -> None:
    assert parse_action(action, payload).need == need


def test_only_a_reboot_command_starts_the_cooldown() -> None:
    assert parse_action("reboot", {}).reboots
    assert parse_action("cmd", {"name": "reboot"}).reboots
    assert not parse_action("cmd", {"name": "clear"}).reboots
    assert not parse_action("relay", {"relay": 1, "state": "open"}).reboots


@pytest.mark.parametrize(
    ("action", "payload", "named"),
    [
        ("reboot", {"now": True}, "'now'"),
        ("cmd", {}, "'name'"),
        ("cmd", {"name": 7}, "'name'"),
        ("cmd", {"name": "../sys"}, "'name'"),
        ("cmd", {"name": "Clear"}, "'name'"),
        ("relay", {"state": "closed"}, "'relay'"),
        ("relay", {"relay": 1, "mask": 1, "state": "closed"}, "'mask'"),
        ("relay", {"relay": 1}, "'state'"),
        ("relay", {"relay": 1, "state": "on"}, "'state'"),
        ("relay", {"relay": 0, "state": "open"}, "'relay'"),
        ("relay", {"relay": -2, "state": "open"}, "'relay'"),
        ("relay", {"relay": "1", "state": "open"}, "'relay'"),
        ("relay", {"relay": True, "state": "open"}, "'relay'"),
        ("relay", {"relay": 1.5, "state": "open"}, "'relay'"),
        ("relay", {"mask": 0, "state": "open"}, "'mask'"),
        ("relay", {"mask": 1 << 32, "state": "open"}, "'mask'"),
        ("relay", {"relay": 1, "state": "open", "device": "PRM3"}, "'device'"),
        ("relay", {"relay": 1, "state": "open", "device": {}}, "'device'"),
        ("relay", {"relay": 1, "state": "open", "device": {"colour": "red"}}, "'colour'"),
        ("relay", {"relay": 1, "state": "open", "device": {"sn": 7}}, "'sn'"),
        ("config/get", {}, "'path'"),
        ("config/get", {"path": "net/hostname"}, "'path'"),
        ("config/get", {"path": "/net/../user"}, "'path'"),
        ("config/get", {"path": "/"}, "'path'"),
        ("config/get", {"path": "/net?x=1"}, "'path'"),
        ("config/set", {"path": "/net/hostname"}, "'value'"),
        ("config/set", {"path": "/net/hostname", "value": "x", "merge": "yes"}, "'merge'"),
        ("ctrl/call", {"method": "relay.close"}, "'device'"),
        ("ctrl/call", {"device": {"model": "PRM3"}}, "'method'"),
        ("ctrl/call", {"device": {"model": "PRM3"}, "method": "relay close"}, "'method'"),
        ("ctrl/call", {"device": {"model": "PRM3"}, "method": "relay.close", "args": 0},
         "'args'"),
        ("ctrl/call", {"device": {"model": "PRM3"}, "method": "m", "args": [0] * 17}, "16"),
        ("ctrl/devices", {"device": []}, "'device'"),
    ],
)
def test_invalid_requests_are_refused_naming_the_problem(action: str, payload: dict[str, Any],
                                                         named: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_action(action, payload)
    assert caught.value.code == "invalid"
    assert named in caught.value.message


@pytest.mark.parametrize("action", ["", "reboot/now", "config", "Reboot", "ctrl/device"])
def test_unknown_actions_are_refused_listing_the_known_ones(action: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_action(action, {})
    assert caught.value.code == "unknown_action"
    assert all(name in caught.value.message for name in ACTIONS)


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "null"), (True, "boolean"), (0, "number"), (1.5, "number"), ("", "string"),
     ([], "array"), ({}, "object")],
)
def test_json_kind_names_the_json_type(value: Any, kind: str) -> None:
    assert json_kind(value) == kind
