"""What a fleet of hundreds of meters per instance relies on: the retained-topic ledger writes
its file once for many changes, and meter clients share their TLS contexts."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import trustme

from gateway.meter import TlsContexts
from gateway.meter.channel import Channel
from gateway.mqtt.ledger import RetainedLedger
from tests.support.waiting import async_wait_until

METERS = 50


def recorded(path: Path) -> dict[str, list[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {m: entry["topics"] for m, entry in data["meters"].items()}


async def test_ledger_writes_many_changes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = RetainedLedger(path)
    for i in range(METERS):
        ledger.record(f"m{i}", [f"base/m{i}/state", f"base/m{i}/availability"])
    assert not path.exists(), "nothing written while the changes keep coming"
    ledger.flush()
    assert len(recorded(path)) == METERS
    assert recorded(path)["m7"] == ["base/m7/availability", "base/m7/state"]

    ledger.forget("m7")
    await async_wait_until(lambda: "m7" not in recorded(path), timeout=10,
                           what="the delayed write")
    assert len(recorded(path)) == METERS - 1


def test_ledger_without_an_event_loop_writes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = RetainedLedger(path)
    ledger.record("main", ["base/main/state"])
    assert recorded(path) == {"main": ["base/main/state"]}
    again = RetainedLedger(path)
    again.load()
    assert again.topics("main") == frozenset({"base/main/state"})


def test_meters_with_the_same_verification_share_one_context(tmp_path: Path) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    contexts = TlsContexts()
    system = contexts.get("a", True)
    assert contexts.get("b", True) is system
    assert system.verify_mode == ssl.CERT_REQUIRED
    own = contexts.get("c", str(bundle))
    assert contexts.get("d", str(bundle)) is own
    assert own is not system
    unverified = contexts.get("e", False)
    assert unverified.verify_mode == ssl.CERT_NONE
    assert contexts.get("f", False) is unverified


async def test_plain_http_meters_share_one_context_for_their_transports() -> None:
    contexts = TlsContexts()
    channels = [Channel(f"m{i}", f"http://127.0.0.{i + 2}:80", timeout_s=0.5, tls=contexts)
                for i in range(2)]
    try:
        given = [c._verify for c in channels]
        assert isinstance(given[0], ssl.SSLContext)
        assert given[0] is given[1] is contexts.get("any", False)
    finally:
        for c in channels:
            await c.aclose()
