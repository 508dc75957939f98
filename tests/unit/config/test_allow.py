"""The commands.allow grammar (gateway.config.allowlist) as the config loader applies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import allowlist, load_config
from gateway.config.allowlist import AllowEntry
from tests.support.config import ENV, meter, problems, write

EXPECTED = ("unknown command entry; expected reboot, relay, ctrl/devices, ctrl:METHOD, cmd:NAME, "
            "config:/PATH, config-read:/PATH, capture, ctid, ctid-scan, ctid-flash, log:NAME, "
            "alert-ack, lua:NAME, lua-read:NAME or api-read:/PATH")


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("reboot", AllowEntry("reboot", "")),
        ("relay", AllowEntry("relay", "")),
        ("ctrl/devices", AllowEntry("ctrl/devices", "")),
        ("ctrl:relay.close", AllowEntry("ctrl", "relay.close")),
        ("ctrl:open", AllowEntry("ctrl", "open")),
        ("cmd:clear", AllowEntry("cmd", "clear")),
        ("cmd:factory-restore", AllowEntry("cmd", "factory-restore")),
        ("config:/net/hostname", AllowEntry("config", "/net/hostname")),
        ("config:/", AllowEntry("config", "/")),
        ("config-read:/register/physical/Solar+", AllowEntry("config-read",
                                                             "/register/physical/Solar+")),
        ("capture", AllowEntry("capture", "")),
        ("ctid", AllowEntry("ctid", "")),
        ("ctid-scan", AllowEntry("ctid-scan", "")),
        ("ctid-flash", AllowEntry("ctid-flash", "")),
        ("alert-ack", AllowEntry("alert-ack", "")),
        ("log:system", AllowEntry("log", "system")),
        ("log:alert", AllowEntry("log", "alert")),
        ("log:lua", AllowEntry("log", "lua")),
        ("log:lua/main", AllowEntry("log", "lua/main")),
        ("lua:tariff_rate", AllowEntry("lua", "tariff_rate")),
        ("lua-read:*", AllowEntry("lua-read", "*")),
        ("api-read:/providers/push", AllowEntry("api-read", "/providers/push")),
        ("api-read:/", AllowEntry("api-read", "/")),
    ],
)
def test_valid_entries(entry: str, parsed: AllowEntry) -> None:
    assert allowlist.parse(entry) == parsed


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("rebot", "unknown command entry (did you mean 'reboot'?)"),
        ("ctrl/device", "unknown command entry (did you mean 'ctrl/devices'?)"),
        ("confg:/net", "unknown command entry (did you mean 'config:'?)"),
        ("everything", EXPECTED),
        ("reboot:now", EXPECTED),
        ("relay:1", EXPECTED),
        ("cmd:", "cmd:NAME needs a name matching [a-z][a-z0-9-]*"),
        ("cmd:Reboot", "cmd:NAME needs a name matching [a-z][a-z0-9-]*"),
        ("cmd:a/b", "cmd:NAME needs a name matching [a-z][a-z0-9-]*"),
        ("ctrl:", "ctrl:METHOD needs a method name such as relay.close"),
        ("ctrl:relay..close", "ctrl:METHOD needs a method name such as relay.close"),
        ("config:net/hostname",
         "config:/PATH needs a path such as /net/hostname (no empty, . or .. segments)"),
        ("config:/net//hostname",
         "config:/PATH needs a path such as /net/hostname (no empty, . or .. segments)"),
        ("config-read:/net/../user",
         "config-read:/PATH needs a path such as /net/hostname (no empty, . or .. segments)"),
        ("config:/net/*",
         "config:/PATH needs a path such as /net/hostname (no empty, . or .. segments)"),
        ("config:", "config:/PATH needs a path such as /net/hostname (no empty, . or .. segments)"),
        ("captur", "unknown command entry (did you mean 'capture'?)"),
        ("ctid:1", EXPECTED),
        ("log:everything", "log:NAME needs system, kernel, alert, lua or lua/SCRIPT"),
        ("log:lua/", "log:NAME needs system, kernel, alert, lua or lua/SCRIPT"),
        ("lua:bad name", "lua:NAME needs a Lua variable name such as tariff_rate, or *"),
        ("lua-read:1x", "lua-read:NAME needs a Lua variable name such as tariff_rate, or *"),
        ("api-read:providers", "api-read:/PATH needs a path such as /providers/push (no empty, "
                               ". or .. segments)"),
        ("api-read:/log/../auth", "api-read:/PATH needs a path such as /providers/push (no "
                                  "empty, . or .. segments)"),
        ("api-read:/auth/logout", "api-read:/PATH cannot cover /auth (its GETs log in and out)"),
    ],
)
def test_invalid_entries(entry: str, message: str) -> None:
    assert allowlist.parse(entry) == message


@pytest.mark.parametrize(
    ("entry_path", "path", "covered"),
    [
        ("/net", "/net", True),
        ("/net", "/net/hostname", True),
        ("/net", "/network", False),
        ("/net/hostname", "/net", False),
        ("/", "/user/owner", True),
    ],
)
def test_config_entries_cover_their_subtree(entry_path: str, path: str, covered: bool) -> None:
    assert allowlist.covers(entry_path, path) is covered


def test_loader_reports_each_bad_entry_with_its_index(tmp_path: Path) -> None:
    allow = "{allow: [reboot, 'config:net', 'cmd:clear', '${VERB}', 'ctrl:']}"
    text = f"meters: [{meter(commands=allow)}]"
    assert problems(tmp_path, text, env={**ENV, "VERB": "relais"}) == [
        "meters[0].commands.allow[1]: config:/PATH needs a path such as /net/hostname (no empty, "
        ". or .. segments) (got 'config:net')",
        "meters[0].commands.allow[3]: unknown command entry (did you mean 'relay'?) "
        "(got 'relais')",
        "meters[0].commands.allow[4]: ctrl:METHOD needs a method name such as relay.close "
        "(got 'ctrl:')",
    ]


def test_empty_policy_by_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"meters: [{meter()}]"), env=ENV)
    assert config.meters[0].commands.allow == ()
