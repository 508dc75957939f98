"""Every command action against the simulator over real HTTP, through the real WebApiClient.

Each test checks the WebAPI calls the simulated meter recorded (method, path, body) and the
state the call left on the meter; the expected calls come from the WebAPI notes and the
simulator's own device list and configuration, not from the router.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.commands import CommandRequest, CommandResponse, CommandRouter, Limits
from gateway.config import CommandPolicy
from gateway.meter import WebApiClient
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

Call = tuple[str, str, Any]


class Lane(asyncio.Lock):
    """The meter's lane, counting the acquirers that had to wait for it."""

    waited = 0

    async def acquire(self) -> bool:
        if self.locked():
            self.waited += 1
        return await super().acquire()


@dataclass
class Rig:
    """A router for the simulated meter ``main`` and what it reported."""

    router: CommandRouter
    meter: SimMeter
    client: WebApiClient
    lane: Lane
    events: list[dict[str, Any]] = field(default_factory=list)
    online: list[bool] = field(default_factory=lambda: [True])

    async def ask(self, action: str, payload: dict[str, Any], **kw: Any) -> CommandResponse:
        response = await self.router.handle(
            CommandRequest("main", action, json.dumps(payload).encode(), source="mqtt", **kw))
        assert response is not None
        return response

    def webapi(self) -> list[Call]:
        """The meter's answered WebAPI calls other than logging in, oldest first."""
        return [(r.method, r.path, r.body) for r in self.meter.calls
                if not r.path.startswith("/api/auth/") and r.status != 401]


RigFactory = Callable[..., Rig]


@pytest.fixture
async def rig(sim_server: SimServer, sim_meter: SimMeter) -> AsyncIterator[RigFactory]:
    clients: list[WebApiClient] = []

    def make(*allow: str, timeout_s: float = 5.0, cooldown_s: float = 300.0,
             limits: Limits | None = None, client_class: type[WebApiClient] = WebApiClient) -> Rig:
        client = client_class("main", sim_server.url_for(sim_meter), SIM_USERNAME,
                              Secret(SIM_PASSWORD), timeout_s=3.0)
        clients.append(client)
        lane = Lane()
        policy = CommandPolicy(allow=allow, reboot_cooldown_s=cooldown_s, timeout_s=timeout_s)
        made = Rig(None, sim_meter, client, lane)  # type: ignore[arg-type]
        made.router = CommandRouter(
            {"main": client}, {"main": policy}, {"main": lane},
            is_online=lambda meter: made.online[0], audit=made.events.append,
            limits=limits or Limits())
        return made

    yield make
    sim_meter.faults.clear()
    for client in clients:
        await client.aclose()


def prm3(meter: SimMeter) -> dict[str, Any]:
    """The simulator's relay device as /ctrl/call attributes."""
    device = meter.controller.devices()[0]
    return {"mfg": device["mfg"], "model": device["model"], "sn": device["sn"]}


# -- each action ------------------------------------------------------------------------------


async def test_reboot_posts_cmd_reboot(rig: RigFactory) -> None:
    r = rig("reboot")
    r.meter.reboot_downtime_s = 0.2
    response = await r.ask("reboot", {"transaction": "boot-1"})
    assert (response.status, response.transaction) == ("ok", "boot-1")
    assert response.data == {"status": "OK"}
    assert r.webapi() == [("POST", "/api/cmd/reboot", None)]
    assert r.meter.boot_reason == "software reset"


async def test_cmd_posts_its_body(rig: RigFactory) -> None:
    r = rig("cmd:clear")
    response = await r.ask("cmd", {"name": "clear", "body": "excess", "transaction": 7})
    assert (response.status, response.transaction, response.data) == ("ok", 7, {"status": "OK"})
    assert r.webapi() == [("POST", "/api/cmd/clear", "excess")]


async def test_relay_closes_one_relay_by_its_printed_number(rig: RigFactory) -> None:
    r = rig("relay")
    response = await r.ask("relay", {"relay": 2, "state": "closed", "transaction": "r2"})
    assert (response.status, response.transaction) == ("ok", "r2"), response.error
    tid = response.data["tid"]
    call = {"attrs": prm3(r.meter), "method": "relay.close", "args": [1]}
    assert r.webapi()[:2] == [("GET", "/api/ctrl/device", None), ("POST", "/api/ctrl/call", call)]
    assert {c for c in r.webapi()[2:]} == {("GET", f"/api/ctrl/call/{tid}", None)}
    assert r.meter.relays == (False, True, False)
    assert response.data["relay"] == 2
    assert response.data["state"] == "closed"


async def test_relay_masks_close_and_open_the_relays_whose_bits_are_set(rig: RigFactory) -> None:
    r = rig("relay")
    closed = await r.ask("relay", {"mask": 7, "state": "closed"})
    assert closed.ok, closed.error
    assert r.meter.relays == (True, True, True)
    opened = await r.ask("relay", {"mask": 5, "state": "open",
                                   "device": {"model": "prm3", "sn": prm3(r.meter)["sn"]}})
    assert opened.ok, opened.error
    assert r.meter.relays == (False, True, False)
    posts = [c[2] for c in r.webapi() if c[:2] == ("POST", "/api/ctrl/call")]
    assert [(p["method"], p["args"]) for p in posts] == [("relay.close_mask", [7]),
                                                         ("relay.open_mask", [5])]


async def test_relay_numbers_beyond_the_device_are_invalid_and_not_sent(rig: RigFactory) -> None:
    r = rig("relay")
    response = await r.ask("relay", {"relay": 4, "state": "closed"})
    assert response.code == "invalid"
    assert "1..3" in (response.error or "")
    assert r.webapi() == [("GET", "/api/ctrl/device", None)]


async def test_relay_on_a_device_the_meter_does_not_have_is_invalid(rig: RigFactory) -> None:
    r = rig("relay")
    response = await r.ask("relay", {"relay": 1, "state": "open", "device": {"sn": "nope"}})
    assert response.code == "invalid"
    assert "no relay device" in (response.error or "")
    assert [c[:2] for c in r.webapi()] == [("GET", "/api/ctrl/device")]


async def test_config_get_reads_the_path(rig: RigFactory) -> None:
    r = rig("config-read:/net")
    response = await r.ask("config/get", {"path": "/net/hostname", "transaction": "g"})
    assert (response.status, response.transaction) == ("ok", "g")
    assert response.data == {"path": "/net/hostname", "value": r.meter.hostname}
    assert r.webapi() == [("GET", "/api/config/net/hostname", None)]


async def test_a_lone_surrogate_in_a_config_path_is_invalid(rig: RigFactory) -> None:
    r = rig("config:/")
    for action in ("config/get", "config/set"):
        response = await r.router.handle(CommandRequest(
            "main", action, b'{"path": "/net/\\ud800x", "value": "v", "transaction": "u"}'))
        assert response is not None
        assert (response.code, response.transaction) == ("invalid", None), response.error
        assert "lone surrogate" in (response.error or "")
    assert r.webapi() == []


async def test_config_values_under_secret_names_are_masked_in_the_answer(
        rig: RigFactory) -> None:
    r = rig("config:/remote")
    secret = {"pwd": "S-one", "nested": {"password": "S-two",
                                         "list": [{"Authorization": "Bearer S-three"}]}}
    response = await r.ask("config/set", {"path": "/remote/vault", "value": secret})
    assert response.ok, response.error
    assert r.meter.config.get(["remote", "vault"]) == secret  # the meter got the real value
    got = await r.ask("config/get", {"path": "/remote/vault"})
    assert got.data == {"path": "/remote/vault", "value": {
        "pwd": "***", "nested": {"password": "***", "list": [{"Authorization": "***"}]}}}
    for word in ("S-one", "S-two", "S-three"):
        assert word not in json.dumps(r.events) + got.encode().decode()


async def test_config_set_reads_then_puts_the_value(rig: RigFactory) -> None:
    r = rig("config:/net/hostname")
    response = await r.ask("config/set", {"path": "/net/hostname", "value": "meter-7",
                                          "transaction": "s"})
    assert (response.status, response.transaction) == ("ok", "s"), response.error
    assert r.webapi() == [("GET", "/api/config/net/hostname", None),
                          ("PUT", "/api/config/net/hostname", "meter-7")]
    assert r.meter.hostname == "meter-7"


async def test_config_set_with_merge_posts_into_the_object(rig: RigFactory) -> None:
    r = rig("config:/var")
    before = dict(r.meter.config.get(["var", "global"]))
    response = await r.ask("config/set", {"path": "/var/global", "merge": True,
                                          "value": {"site.name": "north"}})
    assert response.ok, response.error
    assert r.webapi()[-1] == ("POST", "/api/config/var/global", {"site.name": "north"})
    assert r.meter.config.get(["var", "global"]) == {**before, "site.name": "north"}


async def test_config_set_of_the_wrong_type_is_invalid_and_not_written(rig: RigFactory) -> None:
    r = rig("config:/")
    before = r.meter.hostname
    response = await r.ask("config/set", {"path": "/net/hostname", "value": 42})
    assert response.code == "invalid"
    assert "a string" in (response.error or "")
    assert "a number" in (response.error or "")
    assert r.webapi() == [("GET", "/api/config/net/hostname", None)]
    assert r.meter.hostname == before


async def test_config_set_of_a_write_only_leaf_uses_the_parents_etag(rig: RigFactory) -> None:
    r = rig("config:/user")
    new_hash = "0123456789abcdef0123456789abcdef"
    response = await r.ask("config/set", {"path": f"/user/{SIM_USERNAME}/hash",
                                          "value": new_hash})
    assert response.ok, response.error
    # the simulator records the PUT but masks the secret it carried; the meter got it
    assert r.webapi()[-1] == ("PUT", f"/api/config/user/{SIM_USERNAME}/hash", "***")
    assert r.meter.config.value("user", SIM_USERNAME, "hash") == new_hash
    assert new_hash not in str(r.events)


class RacedClient(WebApiClient):
    """A real client whose meter's configuration changes right after each read."""

    meter: SimMeter

    async def get_config(self, path: str) -> tuple[Any, str | None]:
        value = await super().get_config(path)
        self.meter.config.write("PUT", ["net", "hostname"], "changed-meanwhile")
        return value


async def test_a_configuration_changed_since_the_read_is_a_conflict(rig: RigFactory) -> None:
    r = rig("config:/net", client_class=RacedClient)
    assert isinstance(r.client, RacedClient)
    r.client.meter = r.meter
    response = await r.ask("config/set", {"path": "/net/hostname", "value": "mine"})
    assert response.code == "conflict", response.error
    assert [c[:2] for c in r.webapi()] == [("GET", "/api/config/net/hostname"),
                                           ("PUT", "/api/config/net/hostname")]
    assert r.meter.hostname == "changed-meanwhile"


async def test_ctrl_call_runs_a_method_and_returns_its_result(rig: RigFactory) -> None:
    r = rig("ctrl:relay.close", "ctrl:relay.state")
    device = prm3(r.meter)
    closed = await r.ask("ctrl/call", {"device": device, "method": "relay.close", "args": [2]})
    assert closed.ok, closed.error
    state = await r.ask("ctrl/call", {"device": {"sn": device["sn"]}, "method": "relay.state"})
    assert state.ok, state.error
    assert state.data["result"] == 0b100
    assert r.meter.relays == (False, False, True)
    posts = [c[2] for c in r.webapi() if c[0] == "POST"]
    assert posts == [{"attrs": device, "method": "relay.close", "args": [2]},
                     {"attrs": {"sn": device["sn"]}, "method": "relay.state", "args": []}]


async def test_ctrl_devices_lists_the_devices(rig: RigFactory) -> None:
    r = rig("ctrl/devices")
    response = await r.ask("ctrl/devices", {})
    assert response.ok
    assert response.data == {"devices": r.meter.controller.devices()}
    assert r.webapi() == [("GET", "/api/ctrl/device", None)]


async def test_a_meter_error_is_reported_with_the_meters_text(rig: RigFactory) -> None:
    r = rig("cmd:frobnicate")
    response = await r.ask("cmd", {"name": "frobnicate"})
    assert response.code == "meter_error"
    assert "Unknown command" in (response.error or "")


# -- refusals that never reach the meter ------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "payload"),
    [("reboot", {}), ("cmd", {"name": "clear", "body": "excess"}),
     ("relay", {"relay": 1, "state": "closed"}),
     ("config/get", {"path": "/net/hostname"}),
     ("config/set", {"path": "/net/hostname", "value": "x"}),
     ("ctrl/call", {"device": {"model": "PRM3"}, "method": "relay.close", "args": [0]}),
     ("ctrl/devices", {})],
)
async def test_not_allowed_requests_never_reach_the_meter(rig: RigFactory, action: str,
                                                          payload: dict[str, Any]) -> None:
    r = rig("config-read:/time", "cmd:set-time", "ctrl:relay.open")
    response = await r.ask(action, {**payload, "transaction": "n"})
    assert (response.code, response.transaction) == ("not_allowed", "n")
    assert r.meter.calls == []


async def test_an_offline_meter_is_not_called(rig: RigFactory) -> None:
    r = rig("reboot", "relay")
    r.online[0] = False
    response = await r.ask("relay", {"relay": 1, "state": "closed", "transaction": "o"})
    assert (response.code, response.transaction) == ("offline", "o")
    assert r.meter.calls == []
    r.online[0] = True
    retried = await r.ask("relay", {"relay": 1, "state": "closed", "transaction": "o"})
    assert retried.ok, retried.error
    assert r.meter.relays[0]


async def test_a_meter_that_refuses_connections_is_offline(rig: RigFactory) -> None:
    r = rig("cmd:clear")
    r.meter.go_down(60)
    response = await r.ask("cmd", {"name": "clear", "body": "excess"})
    assert response.code == "offline"
    assert r.webapi() == []


async def test_retained_requests_are_ignored(rig: RigFactory) -> None:
    r = rig("reboot")
    response = await r.router.handle(CommandRequest("main", "reboot", b'{"transaction": "x"}',
                                                    retained=True))
    assert response is None
    assert r.meter.calls == []
    assert [(e["outcome"], e["transaction"]) for e in r.events] == [("ignored", "x")]


async def test_dry_run_reboot_makes_no_call(rig: RigFactory) -> None:
    r = rig("reboot")
    response = await r.ask("reboot", {"dry_run": True, "transaction": "d"})
    assert (response.status, response.transaction) == ("ok", "d")
    assert response.data == {"dry_run": True,
                             "call": {"method": "POST", "path": "/api/cmd/reboot", "body": None}}
    assert r.meter.calls == []
    real = await r.ask("reboot", {})
    assert real.ok, "a dry run does not start the cooldown"


async def test_dry_run_config_set_reads_but_does_not_write(rig: RigFactory) -> None:
    r = rig("config:/net/hostname")
    before = r.meter.hostname
    response = await r.ask("config/set", {"path": "/net/hostname", "value": "meter-9",
                                          "dry_run": True})
    assert response.ok, response.error
    assert response.data == {"dry_run": True, "call": {
        "method": "PUT", "path": "/api/config/net/hostname", "body": "meter-9",
        "headers": {"If-Match": r.meter.config.etag}}}
    assert r.webapi() == [("GET", "/api/config/net/hostname", None)]
    assert r.meter.hostname == before


async def test_dry_run_relay_resolves_the_device_only(rig: RigFactory) -> None:
    r = rig("relay")
    response = await r.ask("relay", {"relay": 3, "state": "closed", "dry_run": True})
    assert response.ok, response.error
    assert response.data["call"] == {"method": "POST", "path": "/api/ctrl/call", "body": {
        "attrs": prm3(r.meter), "method": "relay.close", "args": [2]}}
    assert r.webapi() == [("GET", "/api/ctrl/device", None)]
    assert r.meter.relays == (False, False, False)


async def test_dry_run_masks_secret_values(rig: RigFactory) -> None:
    r = rig("config:/user")
    secret = "fedcba9876543210fedcba9876543210"
    response = await r.ask("config/set", {"path": f"/user/{SIM_USERNAME}/hash", "value": secret,
                                          "dry_run": True})
    assert response.ok, response.error
    assert response.data["call"]["body"] == "***"
    assert secret not in response.encode().decode()


async def test_a_second_reboot_within_the_cooldown_is_refused(rig: RigFactory) -> None:
    r = rig("reboot", "cmd:reboot", cooldown_s=300)
    r.meter.reboot_downtime_s = 0.1
    first = await r.ask("reboot", {})
    assert first.ok, first.error
    again = await r.ask("reboot", {"transaction": "again"})
    as_cmd = await r.ask("cmd", {"name": "reboot"})
    assert (again.code, again.transaction) == ("cooldown", "again")
    assert as_cmd.code == "cooldown"
    assert r.webapi().count(("POST", "/api/cmd/reboot", None)) == 1


async def test_a_duplicate_transaction_runs_once_even_while_the_first_runs(
        rig: RigFactory) -> None:
    r = rig("relay")
    payload = {"relay": 1, "state": "closed", "transaction": "dup"}
    first, second = await asyncio.gather(r.ask("relay", payload), r.ask("relay", payload))
    third = await r.ask("relay", payload)
    assert first.ok, first.error
    assert first == second == third
    assert [c[:2] for c in r.webapi()].count(("POST", "/api/ctrl/call")) == 1
    assert sorted(e.get("note", "") for e in r.events) == ["", "duplicate", "duplicate"]


async def test_a_slow_meter_times_out_and_the_retry_does_not_send_again(
        rig: RigFactory) -> None:
    r = rig("cmd:clear", timeout_s=0.5)
    await r.client.ctrl_devices()  # logged in before the meter turns slow
    r.meter.faults.update({"latency_s": 2.0})
    payload = {"name": "clear", "body": "excess", "transaction": "slow"}
    response = await r.ask("cmd", payload)
    assert (response.code, response.transaction) == ("timeout", "slow")
    assert "may still carry it out" in (response.error or "")
    retry = await r.ask("cmd", payload)
    assert retry == response
    assert r.webapi().count(("POST", "/api/cmd/clear", "excess")) == 1


async def test_a_full_queue_answers_busy_and_a_retry_runs(rig: RigFactory) -> None:
    r = rig("cmd:clear", limits=Limits(queue=1))
    later = {"name": "clear", "body": "web_cache", "transaction": "b"}
    async with r.lane:  # a poll holds the meter
        first = asyncio.create_task(r.ask("cmd", {"name": "clear", "body": "excess"}))
        second = asyncio.create_task(r.ask("cmd", later))
        assert ((await second).code, (await second).transaction) == ("busy", "b")
        assert r.meter.calls == []
    assert (await first).ok
    assert (await r.ask("cmd", later)).ok
    assert r.webapi() == [("POST", "/api/cmd/clear", "excess"),
                          ("POST", "/api/cmd/clear", "web_cache")]


async def test_a_timeout_before_anything_was_sent_is_not_remembered(rig: RigFactory) -> None:
    r = rig("cmd:clear", timeout_s=0.3)
    payload = {"name": "clear", "body": "excess", "transaction": "q"}
    async with r.lane:  # a poll holds the meter longer than the command may wait
        waited = await r.ask("cmd", payload)
    assert waited.code == "timeout"
    assert "may still" not in (waited.error or "")
    assert r.meter.calls == []
    assert (await r.ask("cmd", payload)).ok
    assert r.webapi() == [("POST", "/api/cmd/clear", "excess")]


async def test_the_rate_limit_answers_busy(rig: RigFactory) -> None:
    r = rig("cmd:clear", limits=Limits(rate=2, rate_window_s=3600))
    answers = [await r.ask("cmd", {"name": "clear", "body": "excess"}) for _ in range(3)]
    assert [a.code for a in answers] == [None, None, "busy"]
    assert "rate limit" in (answers[2].error or "")
    assert len(r.webapi()) == 2


async def test_every_meter_call_happens_inside_the_lane(rig: RigFactory) -> None:
    r = rig("relay", "config:/net", "cmd:clear")
    outside: list[str] = []
    original = r.meter.recorder.add

    def add(record: Any) -> None:
        if not r.lane.locked():
            outside.append(f"{record.method} {record.path}")
        original(record)

    r.meter.recorder.add = add  # type: ignore[method-assign]
    answers = await asyncio.gather(
        r.ask("relay", {"relay": 1, "state": "closed"}),
        r.ask("config/set", {"path": "/net/hostname", "value": "lane-test"}),
        r.ask("cmd", {"name": "clear", "body": "excess"}),
    )
    assert all(a.ok for a in answers), [a.error for a in answers]
    assert len(r.meter.calls) >= 6
    assert outside == []


async def test_a_duplicate_waiting_for_a_cancelled_first_request_gets_an_answer(
        rig: RigFactory) -> None:
    r = rig("cmd:clear")
    payload = {"name": "clear", "body": "excess", "transaction": "c"}
    async with r.lane:
        first = asyncio.create_task(r.ask("cmd", payload))
        duplicate = asyncio.create_task(r.ask("cmd", payload))
        await async_wait_until(lambda: r.lane.waited == 1, what="the first request waiting")
        first.cancel()
        answer = await duplicate
    assert first.cancelled()
    assert (answer.code, answer.transaction) == ("timeout", "c")
    assert "cancelled" in (answer.error or "")
    assert r.meter.calls == []
    assert (await r.ask("cmd", payload)).ok, "a cancelled first request is not remembered"
