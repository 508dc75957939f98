"""The primary host's STATE: the Sparkplug 3.0 JSON form and the plain pre-3.0 form, stale
messages (an older timestamp) ignored."""

from __future__ import annotations

import pytest

from gateway.sparkplug.host import HostState, PrimaryHost, parse_state


@pytest.mark.parametrize(("payload", "state"), [
    (b'{"online": true, "timestamp": 1700000000000}', HostState(True, 1700000000000)),
    (b'{"online": false, "timestamp": 5.0}', HostState(False, 5)),
    (b'{"online": true}', HostState(True, None)),
    (b"ONLINE", HostState(True)),
    (b" offline\n", HostState(False)),
])
def test_state_payloads(payload: bytes, state: HostState) -> None:
    assert parse_state(payload) == state


@pytest.mark.parametrize("payload", [
    b"", b"{", b"[]", b'{"online": "true"}', b'{"online": 1}', b'{"timestamp": 5}',
    b'{"online": true, "timestamp": "now"}', b'{"online": true, "timestamp": Infinity}',
    b'{"online": true, "timestamp": true}', b"ONLINE" + b" " * 5000,
])
def test_what_is_no_state(payload: bytes) -> None:
    assert parse_state(payload) is None


def test_a_stale_state_changes_nothing() -> None:
    host = PrimaryHost("scada")
    assert host.online is False
    assert host.update(HostState(True, 100)) is True
    assert host.update(HostState(True, 120)) is False  # no change
    assert host.update(HostState(False, 110)) is False  # older than the newest seen: stale
    assert host.online is True
    assert host.update(HostState(False, 120)) is True  # the same timestamp counts
    assert host.online is False
    assert host.update(HostState(True)) is True  # the plain form has no timestamp
    assert host.online is True
