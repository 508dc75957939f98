"""CommandRouter answers that never reach a meter: decoding, policy, duplicates, audit.

The router's client points at a port nothing listens on: a request that wrongly reached
the meter would come back as ``offline``, never as the code these tests expect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.commands import Command, CommandRequest, CommandResponse, CommandRouter, Limits
from gateway.commands.redaction import MASK
from gateway.config import CommandPolicy
from gateway.errors import ErrorCode
from gateway.meter import WebApiClient
from gateway.secret import Secret

DEAD_URL = "http://127.0.0.1:9"


@pytest.fixture
async def client() -> AsyncIterator[WebApiClient]:
    c = WebApiClient("main", DEAD_URL, "owner", Secret("pw-never-shown"), timeout_s=0.5)
    yield c
    await c.aclose()


Events = list[dict[str, Any]]


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
def make_router(client: WebApiClient, events: Events) -> Callable[..., CommandRouter]:
    def make(allow: tuple[str, ...] = (), online: bool = True, **limits: Any) -> CommandRouter:
        return CommandRouter(
            {"main": client}, {"main": CommandPolicy(allow=allow)}, {"main": asyncio.Lock()},
            is_online=lambda meter: online, audit=events.append, limits=Limits(**limits),
        )
    return make


def request(action: str, payload: bytes | dict[str, Any], **kw: Any) -> CommandRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return CommandRequest("main", action, body, **kw)


async def answer(router: CommandRouter, req: CommandRequest) -> CommandResponse:
    response = await router.handle(req)
    assert response is not None
    return response


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (b" \n", "empty"),
        (b"reboot", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": Infinity}', "not JSON"),
        (b"[" * 5000 + b"]" * 5000, "not JSON"),
        (b"9" * 5000, "not JSON"),
        (b"[]", "JSON object"),
        (b'"reboot"', "JSON object"),
        (b"null", "JSON object"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "deeper than 32"),
        (b'{"transaction": {"id": 1}}', "'transaction'"),
        (b'{"transaction": true}', "'transaction'"),
        (b'{"transaction": ""}', "'transaction'"),
        (json.dumps({"transaction": "x" * 129}).encode(), "'transaction'"),
        (b'{"dry_run": "yes"}', "'dry_run'"),
    ],
)
async def test_undecodable_payloads_are_invalid(make_router: Callable[..., CommandRouter],
                                                payload: bytes, named: str) -> None:
    response = await answer(make_router(("reboot",)), request("reboot", payload))
    assert (response.status, response.code) == ("error", "invalid")
    assert named in (response.error or "")
    assert response.transaction is None


async def test_payloads_over_the_limit_are_invalid(
        make_router: Callable[..., CommandRouter]) -> None:
    payload = json.dumps({"transaction": "t1", "pad": "x" * 16_400}).encode()
    response = await answer(make_router(("reboot",)), request("reboot", payload))
    assert response.code == "invalid"
    assert "16384 bytes" in (response.error or "")


async def test_field_errors_echo_the_transaction(
        make_router: Callable[..., CommandRouter]) -> None:
    response = await answer(make_router(("relay",)),
                            request("relay", {"transaction": 17, "relay": 0, "state": "open"}))
    assert (response.code, response.transaction) == ("invalid", 17)
    assert "'relay'" in (response.error or "")


async def test_unknown_actions_and_meters_are_refused(
        make_router: Callable[..., CommandRouter]) -> None:
    router = make_router(("reboot",))
    unknown = await answer(router, request("self-destruct", {"transaction": "a"}))
    assert (unknown.code, unknown.transaction) == ("unknown_action", "a")
    other = await answer(router, CommandRequest("other", "reboot", b"{}"))
    assert other.code == "invalid"
    assert "unknown meter 'other'" in (other.error or "")


@pytest.mark.parametrize(
    ("action", "payload", "entry"),
    [
        ("reboot", {}, "reboot"),
        ("cmd", {"name": "clear", "body": "excess"}, "cmd:clear"),
        ("relay", {"relay": 1, "state": "closed"}, "relay"),
        ("config/get", {"path": "/net/hostname"}, "config-read:/net/hostname"),
        ("config/set", {"path": "/net/hostname", "value": "m"}, "config:/net/hostname"),
        ("ctrl/call", {"device": {"model": "PRM3"}, "method": "relay.open", "args": [0]},
         "ctrl:relay.open"),
        ("ctrl/devices", {}, "ctrl/devices"),
    ],
)
async def test_nothing_is_allowed_by_default(make_router: Callable[..., CommandRouter],
                                             action: str, payload: dict[str, Any],
                                             entry: str) -> None:
    response = await answer(make_router(), request(action, payload))
    assert response.code == "not_allowed"
    assert f"needs {entry} in commands.allow" in (response.error or "")


async def test_a_policy_for_one_action_does_not_allow_another(
        make_router: Callable[..., CommandRouter]) -> None:
    router = make_router(("relay", "cmd:clear", "config-read:/"))
    for action, payload in [("reboot", {}), ("cmd", {"name": "reboot"}),
                            ("config/set", {"path": "/net/hostname", "value": "m"}),
                            ("ctrl/call", {"device": {"sn": "1"}, "method": "relay.close"})]:
        assert (await answer(router, request(action, payload))).code == "not_allowed", action


async def test_retained_requests_are_neither_run_nor_answered_but_audited(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router(("reboot",))
    with capture_logs() as logs:
        response = await router.handle(request("reboot", {"transaction": "r"}, retained=True))
    assert response is None
    assert [e["outcome"] for e in events] == ["ignored"]
    assert events[0]["note"] == "retained"
    assert [e["event"] for e in logs] == ["command"]


async def test_empty_payloads_clear_retained_messages_and_are_not_answered(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router(("reboot",))
    assert await router.handle(request("reboot", b"")) is None
    assert [(e["outcome"], e["note"]) for e in events] == [("ignored", "empty")]


async def test_a_transaction_is_answered_once_then_replayed(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router()
    first = await answer(router, request("reboot", {"transaction": "t"}))
    again = await answer(router, request("reboot", {"transaction": "t"}))
    assert first.code == "not_allowed"
    assert again == first
    assert [e.get("note") for e in events] == [None, "duplicate"]


async def test_a_transaction_reused_for_another_request_is_invalid(
        make_router: Callable[..., CommandRouter]) -> None:
    router = make_router()
    await answer(router, request("reboot", {"transaction": "t"}))
    other = await answer(router, request("relay", {"transaction": "t", "relay": 1,
                                                   "state": "open"}))
    assert other.code == "invalid"
    assert "already used" in (other.error or "")


async def test_transactions_are_forgotten_after_the_window(
        client: WebApiClient, events: Events) -> None:
    now = [1000.0]
    router = CommandRouter({"main": client}, {"main": CommandPolicy()}, {"main": asyncio.Lock()},
                           is_online=lambda m: True, audit=events.append,
                           limits=Limits(dedup_window_s=60), clock=lambda: now[0])
    await answer(router, request("reboot", {"transaction": "t"}))
    now[0] += 61
    await answer(router, request("relay", {"transaction": "t", "relay": 1, "state": "open"}))
    assert [e["outcome"] for e in events] == ["not_allowed", "not_allowed"]
    assert [e.get("note") for e in events] == [None, None]


async def test_only_the_newest_transactions_are_kept(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router(dedup_size=2)
    for t in ("a", "b", "c", "a"):
        await answer(router, request("reboot", {"transaction": t}))
    assert [e.get("note") for e in events] == [None, None, None, None]


async def test_the_audit_event_masks_secrets_and_says_what_happened(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router()
    secret_value = "0123456789abcdef0123456789abcdef"
    with capture_logs() as logs:
        await answer(router, request("config/set", {
            "transaction": "pw", "path": "/user/owner/hash", "value": secret_value},
            source="mqtt", client="egauge/main/request/config/set"))
        await answer(router, request("cmd", {"name": "test-email",
                                             "body": {"address": "a@b", "mailpass": "hunter2"}}))
    assert len(events) == 2
    first = events[0]
    assert first["meter"] == "main"
    assert first["action"] == "config/set"
    assert first["source"] == "mqtt"
    assert first["client"] == "egauge/main/request/config/set"
    assert first["transaction"] == "pw"
    assert first["outcome"] == "not_allowed"
    assert first["request"] == {"path": "/user/owner/hash", "value": MASK}
    assert first["duration_s"] >= 0
    assert events[1]["request"]["body"] == {"address": "a@b", "mailpass": MASK}
    logged = json.dumps(logs, default=str)
    assert secret_value not in logged
    assert "hunter2" not in logged
    assert secret_value not in json.dumps(events)


async def test_a_failing_audit_sink_does_not_change_the_answer(client: WebApiClient) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("sink down")

    router = CommandRouter({"main": client}, {"main": CommandPolicy()}, {"main": asyncio.Lock()},
                           is_online=lambda m: True, audit=broken)
    with capture_logs() as logs:
        response = await answer(router, request("reboot", {}))
    assert response.code == "not_allowed"
    assert "command_audit_failed" in [e["event"] for e in logs]


async def test_an_async_audit_sink_is_awaited(client: WebApiClient) -> None:
    seen: list[str] = []

    async def sink(event: Any) -> None:
        await asyncio.sleep(0)
        seen.append(event["outcome"])

    router = CommandRouter({"main": client}, {"main": CommandPolicy()}, {"main": asyncio.Lock()},
                           is_online=lambda m: True, audit=sink)
    await answer(router, request("reboot", {}))
    assert seen == ["not_allowed"]


def test_a_response_encodes_every_field() -> None:
    ok = CommandResponse("main", "relay", "ok", data={"tid": 5}, transaction="t")
    assert json.loads(ok.encode()) == {"status": "ok", "data": {"tid": 5}, "error": None,
                                       "code": None, "transaction": "t", "meter": "main",
                                       "action": "relay"}


def test_a_request_built_by_code_carries_its_fields_without_json() -> None:
    fields = {"relay": 2, "state": "open", "device": {"model": "PRM3"}}
    command = Command.of("main", "relay", fields, source="modbus", client="unit 1")
    assert command.fields == fields
    assert command.fields is not fields  # a copy: the caller's dict may change afterwards
    assert (command.source, command.client) == ("modbus", "unit 1")
    assert (command.envelope.transaction, command.envelope.dry_run) == (None, False)


@pytest.mark.parametrize("payload", [
    b'{"path": "/net/\\ud800", "transaction": "s1"}',
    b'{"path": "/net/hostname", "value": "a\\udfffb", "transaction": "s1"}',
    b'{"path": "/net/hostname", "value": {"\\ud83d": 1}, "transaction": "s1"}',
])
async def test_a_lone_surrogate_anywhere_is_invalid_not_an_internal_error(
        make_router: Callable[..., CommandRouter], payload: bytes) -> None:
    router = make_router(("config:/",))
    with capture_logs() as logs:
        response = await answer(router, request("config/set", payload))
    assert (response.code, response.transaction) == ("invalid", None)
    assert "lone surrogate" in (response.error or "")
    assert "command_failed" not in [e["event"] for e in logs]


async def test_a_request_for_an_unknown_meter_leaves_no_transaction_behind(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router((), dedup_size=2)
    first = await answer(router, request("reboot", {"transaction": "mine"}))
    for n in range(5):  # a stranger's requests for meters that do not exist
        stranger = await answer(router, CommandRequest(f"ghost{n}", "reboot",
                                                       b'{"transaction": "x"}'))
        assert stranger.code == "invalid"
    again = await answer(router, request("reboot", {"transaction": "mine"}))
    assert first.code == again.code == "not_allowed"
    assert events[-1].get("note") == "duplicate"  # still remembered: nothing evicted it


def test_refuse_answers_at_once_and_audits(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router(("reboot",))
    with capture_logs() as logs:
        response = router.refuse(request("reboot", {"transaction": "t", "pwd": "S3cr3t"}),
                                 ErrorCode.BUSY, "the inbox is full")
        ignored = router.refuse(request("reboot", {"transaction": "r"}, retained=True),
                                ErrorCode.BUSY, "the inbox is full")
    assert response is not None
    assert (response.code, response.transaction, response.error) == ("busy", "t",
                                                                      "the inbox is full")
    assert ignored is None
    assert [(e["outcome"], e.get("note")) for e in events] == [("busy", None),
                                                              ("ignored", "retained")]
    assert events[0]["request"] == {"pwd": MASK}
    assert "S3cr3t" not in json.dumps(logs, default=str)


async def test_transport_notes_are_audited(
        make_router: Callable[..., CommandRouter], events: Events) -> None:
    router = make_router(("reboot",))
    await answer(router, request("reboot", {}, notes=("response_topic_refused",)))
    assert events[-1]["note"] == "response_topic_refused"

