"""Random requests under random policies against the simulator: every request gets exactly
one well-formed answer, nothing raises, and the meter never sees a call the policy did not
allow (checked on the simulator's call recorder, from the WebAPI call back to the entry that
would allow it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.commands import ACTIONS, CommandRequest, CommandRouter, Limits
from gateway.config import CommandPolicy
from gateway.config.allowlist import AllowEntry, covers, parse
from gateway.meter import WebApiClient
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME

pytestmark = pytest.mark.integration

CODES = {"invalid", "not_allowed", "unknown_action", "cooldown", "offline", "timeout",
         "meter_error", "conflict", "busy"}
ENTRIES = ["reboot", "relay", "ctrl/devices", "cmd:clear", "cmd:reboot", "ctrl:relay.close",
           "ctrl:relay.state", "config:/net/hostname", "config:/var", "config-read:/net",
           "config-read:/time", "config:/user/owner/hash", "capture", "ctid", "ctid-scan",
           "ctid-flash", "log:system", "log:alert", "log:lua", "alert-ack", "lua-read:x",
           "lua:*", "api-read:/providers", "api-read:/config/var"]
RELAY_METHODS = {"relay.close", "relay.open", "relay.close_mask", "relay.open_mask"}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 9), st.sampled_from([1 << 32, 2.5, -0.0]),
    st.sampled_from(["closed", "open", "excess", "clear", "reboot", "relay.close", "relay.state",
                     "close", "/net/hostname", "/net", "/var/global", "/time/zone", "/",
                     "/user/owner/hash", "/net/../user", "meter-x", "UTC0", ""]),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["model", "sn", "a", "interface"]),
                                            inner, max_size=3)),
    max_leaves=6,
)
devices = st.sampled_from([{"model": "PRM3"}, {"sn": "00000007"}, {"model": "XYZ"}, {},
                           {"interface": ["relay"]}, {"index": 0}])
fields = st.dictionaries(
    st.sampled_from(["relay", "mask", "state", "device", "name", "body", "path", "value",
                     "merge", "method", "args", "transaction", "dry_run", "extra"]),
    st.one_of(values, devices), max_size=5)
envelope = st.fixed_dictionaries({}, optional={
    "transaction": st.sampled_from(["t1", "t2", 3]), "dry_run": st.booleans()})
well_formed = st.one_of(
    st.tuples(st.just("reboot"), st.just({})),
    st.tuples(st.just("cmd"), st.fixed_dictionaries({
        "name": st.sampled_from(["clear", "reboot", "frobnicate"])},
        optional={"body": st.sampled_from(["excess", "web_cache", None])})),
    st.tuples(st.just("relay"), st.fixed_dictionaries({
        "state": st.sampled_from(["closed", "open"])}, optional={"device": devices}).flatmap(
        lambda d: st.sampled_from([{**d, "relay": n} for n in range(1, 5)]
                                  + [{**d, "mask": m} for m in (1, 5, 8)]))),
    st.tuples(st.just("config/get"), st.fixed_dictionaries({"path": st.sampled_from(
        ["/net/hostname", "/net", "/time/zone", "/var/global", "/user/owner"])})),
    st.tuples(st.just("config/set"), st.fixed_dictionaries({
        "path": st.sampled_from(["/net/hostname", "/time/zone", "/var/global",
                                 "/user/owner/hash"]),
        "value": st.sampled_from(["meter-x", 5, {"k": "1"}, "UTC0", ["a"]])},
        optional={"merge": st.booleans()})),
    st.tuples(st.just("ctrl/call"), st.fixed_dictionaries({
        "device": devices, "method": st.sampled_from(["relay.close", "relay.state", "close"]),
        "args": st.sampled_from([[0], [1], [], [7]])})),
    st.tuples(st.just("ctrl/devices"), st.just({})),
    st.tuples(st.just("capture"), st.fixed_dictionaries(
        {"duration_s": st.sampled_from([0.01, 0.02])},
        optional={"channels": st.sampled_from([["L1"], [0, 4], ["nope"]])})),
    st.tuples(st.just("capture/info"), st.just({})),
    st.tuples(st.just("ctid/info"), st.fixed_dictionaries({}, optional={
        "port": st.sampled_from([1, 2])})),
    st.tuples(st.just("ctid/scan"), st.fixed_dictionaries({"port": st.sampled_from([1, 2])})),
    st.tuples(st.just("ctid/flash"), st.fixed_dictionaries({"port": st.sampled_from([1, 2])})),
    st.tuples(st.just("log/get"), st.fixed_dictionaries({"log": st.sampled_from(
        ["system", "kernel", "alert", "lua/tick"])})),
    st.tuples(st.just("alert/ack"), st.fixed_dictionaries({"ids": st.sampled_from([[1], [1, 2]])})),
    st.tuples(st.just("lua/var/get"), st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["x", "y"])})),
    st.tuples(st.just("lua/var/set"), st.fixed_dictionaries({
        "name": st.sampled_from(["x", "y"]), "value": st.sampled_from([1, "on", [2]])})),
    st.tuples(st.just("api/get"), st.fixed_dictionaries({"path": st.sampled_from(
        ["/providers/push", "/config/var/global", "/sys/sn", "/auth/rights", "/x/../sys"])})),
).flatmap(lambda pair: envelope.map(lambda env: (pair[0], json.dumps({**pair[1], **env})
                                                 .encode())))
arbitrary = st.tuples(st.sampled_from([*ACTIONS, "bogus", "config", "relay/x", ""]),
                      st.one_of(fields.map(lambda f: json.dumps(f).encode()),
                                st.binary(max_size=24)))
retained = st.sampled_from([False, False, False, True])
requests = st.lists(st.tuples(st.one_of(well_formed, arbitrary), retained).map(
    lambda r: (r[0][0], r[0][1], r[1])), min_size=1, max_size=4)


def entry_for(action: str, payload: bytes) -> str | None:
    """The allow entry a request would need, when it is well-formed enough to say."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    arg = {"cmd": body.get("name"), "ctrl/call": body.get("method"),
           "config/get": body.get("path"), "config/set": body.get("path"),
           "log/get": body.get("log"), "lua/var/get": body.get("name") or "*",
           "lua/var/set": body.get("name"), "api/get": body.get("path")}.get(action, "")
    kind = {"cmd": "cmd", "ctrl/call": "ctrl", "config/get": "config-read",
            "config/set": "config", "capture/info": "capture", "ctid/info": "ctid",
            "ctid/scan": "ctid-scan", "ctid/flash": "ctid-flash", "log/get": "log",
            "alert/ack": "alert-ack", "lua/var/get": "lua-read", "lua/var/set": "lua",
            "api/get": "api-read"}.get(action, action)
    entry = f"{kind}:{arg}" if arg else kind
    return entry if isinstance(parse(entry), AllowEntry) else None


def near_miss(entry: str) -> str:
    """An entry that looks like ``entry`` but must not allow the same request."""
    kind, _, arg = entry.partition(":")
    return {
        "reboot": "cmd:reboot", "relay": "ctrl:relay.close", "ctrl/devices": "relay",
        "cmd": "cmd:reboot" if arg == "clear" else "cmd:clear",
        "ctrl": "ctrl:relay.state" if arg != "relay.state" else "ctrl:relay.close",
        "config": f"config-read:{arg}",
        "config-read": "config-read:/time" if not arg.startswith("/time") else "config:/var",
        "capture": "ctid", "ctid": "capture", "ctid-scan": "ctid", "ctid-flash": "ctid-scan",
        "log": "log:kernel" if arg != "kernel" else "log:system", "alert-ack": "log:alert",
        "lua-read": "lua-read:other", "lua": f"lua-read:{arg}",
        "api-read": "api-read:/elsewhere",
    }[kind]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[set[str], list[tuple[str, bytes, bool]]]:
    """Requests and a policy that allows some of them, has entries that nearly allow
    others, and some unrelated entries."""
    batch = draw(requests)
    policy = draw(st.sets(st.sampled_from(ENTRIES), max_size=3))
    for action, payload, _ in batch:
        entry = entry_for(action, payload)
        choice = draw(st.sampled_from(["grant", "near", "none"]))
        if entry is not None and choice != "none":
            policy.add(entry if choice == "grant" else near_miss(entry))
    return policy, batch


def allowed(call: tuple[str, str, Any], policy: set[str]) -> bool:
    """Whether some entry of ``policy`` lets a command make this WebAPI call."""
    method, path, body = call
    target = path.removeprefix("/api")
    if method == "GET" and not target.startswith("/auth") and any(
            covers(e.partition(":")[2], target) for e in policy if e.startswith("api-read:")):
        return True
    if path == "/api/capture":
        return method == "GET" and "capture" in policy
    if path.startswith("/api/ctid"):
        ops = {"ctid-scan", "ctid-flash"} & policy
        if method == "GET":
            return bool(ops) or "ctid" in policy
        op = body.get("op") if isinstance(body, dict) else None
        return method == "POST" and (f"ctid-{op}" in policy if op else bool(ops))
    if path.startswith("/api/log/"):
        which = path.removeprefix("/api/log/")
        if method == "POST":
            return which == "alert" and "alert-ack" in policy
        script = which.startswith("lua/")
        return method == "GET" and (f"log:{which}" in policy or (script and "log:lua" in policy))
    if path.startswith("/api/lua/var"):
        name = path.removeprefix("/api/lua/var").strip("/").split("/")[0]
        writes = {"lua:*", f"lua:{name}"} & policy
        if method == "GET":
            reads = {"lua-read:*", "lua:*"} if not name else {
                "lua-read:*", f"lua-read:{name}", "lua:*", f"lua:{name}"}
            return bool(reads & policy)
        return method in ("PUT", "POST") and bool(writes)
    if path == "/api/ctrl/device":
        return method == "GET" and bool({"relay", "ctrl/devices"} & policy)
    if path == "/api/ctrl/call" and method == "POST":
        name = body.get("method") if isinstance(body, dict) else None
        return ("relay" in policy and name in RELAY_METHODS) or f"ctrl:{name}" in policy
    if path.startswith("/api/ctrl/call/") and method == "GET":
        return "relay" in policy or any(e.startswith("ctrl:") for e in policy)
    if path.startswith("/api/cmd/") and method == "POST":
        name = path.removeprefix("/api/cmd/")
        return f"cmd:{name}" in policy or (name == "reboot" and "reboot" in policy)
    if path.startswith("/api/config/"):
        target = path.removeprefix("/api/config")
        writable = [e.partition(":")[2] for e in policy if e.startswith("config:")]
        readable = writable + [e.partition(":")[2] for e in policy
                               if e.startswith("config-read:")]
        if method == "GET":
            return any(covers(e, target) for e in readable) or any(
                e.rsplit("/", 1)[0] == target for e in writable)
        return method in ("PUT", "POST") and any(covers(e, target) for e in writable)
    return False


@pytest.fixture
async def client(sim_server: SimServer, sim_meter: SimMeter) -> AsyncIterator[WebApiClient]:
    sim_meter.reboot_downtime_s = 0.0
    c = WebApiClient("main", sim_server.url_for(sim_meter), SIM_USERNAME, Secret(SIM_PASSWORD),
                    timeout_s=2.0)
    yield c
    await c.aclose()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios(), online=st.sampled_from([True, True, True, False]))
async def test_random_requests_get_one_answer_and_only_allowed_calls(
        client: WebApiClient, sim_meter: SimMeter,
        scenario: tuple[set[str], list[tuple[str, bytes, bool]]], online: bool) -> None:
    policy, batch = scenario
    sim_meter.clear_calls()
    router = CommandRouter(
        {"main": client},
        {"main": CommandPolicy(allow=tuple(sorted(policy)), reboot_cooldown_s=0,
                               timeout_s=3.0)},
        {"main": asyncio.Lock()}, is_online=lambda meter: online,
        limits=Limits(rate=10_000))
    answers = await asyncio.gather(*(
        router.handle(CommandRequest("main", action, payload, retained))
        for action, payload, retained in batch))
    for (_, payload, retained), answer in zip(batch, answers, strict=True):
        if retained or not payload:
            assert answer is None
            continue
        assert answer is not None
        assert answer.status in ("ok", "error")
        assert (answer.code is None) == (answer.status == "ok")
        assert answer.code is None or answer.code in CODES, answer
        assert answer.code != "internal_error", answer
        assert answer.code is None or answer.error
        if answer.transaction is not None:
            assert json.loads(payload)["transaction"] == answer.transaction
        json.loads(answer.encode())
    calls = [(r.method, r.path, r.body) for r in sim_meter.calls
             if not r.path.startswith("/api/auth/")]
    assert [c for c in calls if not allowed(c, policy)] == []
    if not online:
        assert calls == []
