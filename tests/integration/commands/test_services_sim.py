"""The actions of the meter's other services (capture, CTid, logs and alerts, Lua variables,
api/get) against the simulator over real HTTP, through the real WebApiClient and router.

Each action is refused without its own allow entry (the meter sees nothing), a dry run
answers the exact call without making it, and a real run is checked against the
simulator's own state and functions (its capture sines, CTid tables, journal, Lua store,
provider catalogue), not against the gateway's code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.commands import CommandRequest, CommandResponse, CommandRouter, Policy, parse_action
from gateway.config import CommandPolicy
from gateway.meter import WebApiClient
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from gateway.simulator.capture import CHANNELS
from gateway.simulator.providers import CATALOGUE
from gateway.simulator.reply import QueryError
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME, ManualClock

pytestmark = pytest.mark.integration

T = 1_700_000_000 + 13 * 3600  # mid-day: every CT carries current

# one request of each action and the entry it needs
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("capture", {"channels": ["L1"], "duration_s": 0.02}, "capture"),
    ("capture/info", {}, "capture"),
    ("ctid/info", {"port": 1}, "ctid"),
    ("ctid/scan", {"port": 1}, "ctid-scan"),
    ("ctid/flash", {"port": 2}, "ctid-flash"),
    ("log/get", {"log": "kernel"}, "log:kernel"),
    ("alert/ack", {"ids": "all"}, "alert-ack"),
    ("lua/var/get", {"name": "mode"}, "lua-read:mode"),
    ("lua/var/set", {"name": "mode", "value": "eco"}, "lua:mode"),
    ("api/get", {"path": "/providers/push"}, "api-read:/providers/push"),
]
EVERY_ENTRY = ["reboot", "relay", "ctrl/devices", "cmd:clear", "config:/", "capture", "ctid",
               "ctid-scan", "ctid-flash", "log:system", "log:kernel", "log:alert", "log:lua",
               "alert-ack", "lua-read:*", "lua:mode", "api-read:/providers/push",
               "api-read:/config"]


@dataclass
class Rig:
    router: CommandRouter
    meter: SimMeter
    lane: asyncio.Lock = field(default_factory=asyncio.Lock)
    events: list[dict[str, Any]] = field(default_factory=list)

    async def ask(self, action: str, payload: dict[str, Any]) -> CommandResponse:
        response = await self.router.handle(
            CommandRequest("main", action, json.dumps(payload).encode()))
        assert response is not None
        return response

    def webapi(self) -> list[tuple[str, str, dict[str, str], Any]]:
        """The meter's answered calls other than logging in: method, path, query, body."""
        return [(r.method, r.path, r.params, r.body) for r in self.meter.calls
                if not r.path.startswith("/api/auth/") and r.status != 401]


RigFactory = Callable[..., Rig]


@pytest.fixture
def meter() -> SimMeter:
    return SimMeter(serial="SIM0001", username=SIM_USERNAME, password=SIM_PASSWORD,
                    clock=ManualClock(T + 0.25), alert_period_s=0)


@pytest.fixture
async def rig(meter: SimMeter) -> AsyncIterator[RigFactory]:
    async with SimServer([meter], host="127.0.0.1", port=0) as server:
        clients: list[WebApiClient] = []

        def make(*allow: str, timeout_s: float = 5.0, ctid_cooldown_s: float = 60.0) -> Rig:
            client = WebApiClient("main", server.url_for(meter), SIM_USERNAME,
                                  Secret(SIM_PASSWORD), timeout_s=3.0)
            clients.append(client)
            policy = CommandPolicy(allow=allow, timeout_s=timeout_s,
                                   ctid_cooldown_s=ctid_cooldown_s)
            made = Rig(None, meter)  # type: ignore[arg-type]
            made.router = CommandRouter({"main": client}, {"main": policy},
                                        {"main": made.lane}, is_online=lambda m: True,
                                        audit=made.events.append)
            return made

        yield make
        for client in clients:
            await client.aclose()


# -- the allowlist ------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "payload", "entry"), CASES, ids=[c[0] for c in CASES])
async def test_each_action_needs_its_own_entry_and_the_meter_sees_nothing_without_it(
        rig: RigFactory, action: str, payload: dict[str, Any], entry: str) -> None:
    need = parse_action(action, payload).need
    others = [e for e in EVERY_ENTRY if not Policy([e]).allows(need)]
    assert entry not in others
    assert Policy([entry]).allows(need)
    r = rig(*others)
    response = await r.ask(action, {**payload, "transaction": "n"})
    assert (response.code, response.transaction) == ("not_allowed", "n")
    assert f"needs {entry}" in (response.error or "")
    assert r.meter.calls == []


# -- dry runs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "payload", "call", "reads"), [
    ("capture", {"channels": ["L1", "s1"], "duration_s": 0.05},
     {"method": "GET", "path": "/api/capture?n&d=0.05&c=0&c=4", "body": None},
     [("GET", "/api/capture", {"i": ""}, None)]),
    ("capture", {"channels": [1], "mode": "rise", "level": 0, "pretrigger_s": 0.002,
                 "trigger_timeout_s": 0.5},
     {"method": "GET", "path": "/api/capture?n&d=0.1&c=1&C=1&M=rise&L=0&T=500&p=0.002",
      "body": None},
     [("GET", "/api/capture", {"i": ""}, None)]),
    ("capture/info", {}, {"method": "GET", "path": "/api/capture?i", "body": None}, []),
    ("ctid/info", {}, {"method": "GET", "path": "/api/ctid", "body": None}, []),
    ("log/get", {"log": "kernel", "after": 1700000000},
     {"method": "GET", "path": "/api/log/kernel?after=1700000000", "body": None}, []),
    ("log/get", {"log": "alert", "after": 1700000000.5, "min_prio": 3},
     {"method": "GET", "path": "/api/log/alert?after=1700000000.5&min_prio=3", "body": None},
     []),
    ("alert/ack", {"ids": [1, 2]},
     {"method": "POST", "path": "/api/log/alert", "body": {"ids": [1, 2]}}, []),
    ("alert/ack", {"ids": "all"}, {"method": "POST", "path": "/api/log/alert", "body": None},
     []),
    ("lua/var/get", {}, {"method": "GET", "path": "/api/lua/var", "body": None}, []),
    ("lua/var/set", {"name": "setpoint", "value": {"low": 17, "high": 22}},
     {"method": "PUT", "path": "/api/lua/var/setpoint/value",
      "body": '{"low":17,"high":22}'}, []),
    ("api/get", {"path": "/config/var/global"},
     {"method": "GET", "path": "/api/config/var/global", "body": None}, []),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_a_dry_run_answers_the_exact_call_and_makes_only_its_reads(
        rig: RigFactory, action: str, payload: dict[str, Any], call: dict[str, Any],
        reads: list[Any]) -> None:
    r = rig(*EVERY_ENTRY, "lua:setpoint")
    response = await r.ask(action, {**payload, "dry_run": True})
    assert response.ok, response.error
    assert response.data == {"dry_run": True, "call": call}
    assert r.webapi() == reads
    assert not r.meter.capturer.busy()


def shown(record: Any) -> dict[str, Any]:
    """A recorded call in the shape a dry run reports it."""
    query = "&".join(k if v == "" else f"{k}={v}" for k, v in record.query)
    return {"method": record.method, "path": record.path + ("?" + query if query else ""),
            "body": record.body}


@pytest.mark.parametrize(("action", "payload"), [
    (a, p) for a, p, _ in CASES if a != "alert/ack"] + [("alert/ack", {"ids": [1]})],
    ids=lambda v: v if isinstance(v, str) else None)
async def test_a_real_run_makes_the_call_its_dry_run_reported(
        rig: RigFactory, meter: SimMeter, action: str, payload: dict[str, Any]) -> None:
    meter.raise_alert("Door open", "back door", 5)
    r = rig(*EVERY_ENTRY, ctid_cooldown_s=0)
    dry = await r.ask(action, {**payload, "dry_run": True})
    assert dry.ok, dry.error
    lookups = [shown(c) for c in meter.calls if not c.path.startswith("/api/auth/")]
    real = await r.ask(action, payload)
    assert real.ok, real.error
    calls = [shown(c) for c in meter.calls if not c.path.startswith("/api/auth/")]
    made = calls[2 * len(lookups)]  # past the dry run's reads and the real run's same reads
    assert calls[len(lookups):2 * len(lookups)] == lookups
    planned = dry.data["call"]
    if action in ("ctid/scan", "ctid/flash"):  # a fresh tid each time
        assert made["body"]["tid"] == real.data["tid"] != planned["body"]["tid"]
        made["body"]["tid"] = planned["body"]["tid"]
    assert made == planned


@pytest.mark.parametrize("action", ["ctid/scan", "ctid/flash"])
async def test_a_dry_run_of_a_disruptive_ctid_action_says_so_and_starts_no_cooldown(
        rig: RigFactory, action: str) -> None:
    r = rig(*EVERY_ENTRY)
    dry = await r.ask(action, {"port": 3, "polarity": "-", "dry_run": True})
    assert dry.ok, dry.error
    call = dry.data["call"]
    assert (call["method"], call["path"]) == ("POST", "/api/ctid/3")
    op = "scan" if action == "ctid/scan" else "flash"
    assert call["body"] == {"op": op, "tid": call["body"]["tid"], "polarity": "-"}
    assert 0 < call["body"]["tid"] < 1 << 32
    assert dry.data["disruptive"] is True
    assert r.meter.calls == []
    assert r.meter.ctid.state == "idle"
    real = await r.ask(action, {"port": 3})
    assert real.ok, real.error  # a dry run did not start the cool-down


async def test_a_dry_run_of_a_secret_lua_variable_masks_its_value(rig: RigFactory) -> None:
    r = rig("lua:api_key")
    response = await r.ask("lua/var/set", {"name": "api_key", "value": "k-123456",
                                           "dry_run": True})
    assert response.data["call"]["body"] == "***"
    assert "k-123456" not in response.encode().decode() + json.dumps(r.events)


# -- capture ------------------------------------------------------------------------------------


def rising_crossings(times: Sequence[float], values: Sequence[float]) -> list[float]:
    found = []
    for (t0, v0), (t1, v1) in itertools.pairwise(zip(times, values, strict=True)):
        if v0 < 0 <= v1:
            found.append(t0 + (t1 - t0) * -v0 / (v1 - v0))
    return found


async def test_capture_info_lists_the_simulators_channels(rig: RigFactory) -> None:
    r = rig("capture")
    response = await r.ask("capture/info", {})
    assert response.ok, response.error
    assert response.data == {"channels": [{"number": n, "name": name, "unit": unit}
                                          for n, (name, unit) in sorted(CHANNELS.items())]}
    assert r.webapi() == [("GET", "/api/capture", {"i": ""}, None)]


async def test_a_capture_returns_the_simulators_waveform(rig: RigFactory) -> None:
    r = rig("capture")
    response = await r.ask("capture", {"channels": ["L1", "S1"], "duration_s": 0.1,
                                       "transaction": "cap"})
    assert (response.status, response.transaction) == ("ok", "cap"), response.error
    data = response.data
    assert data["first_sample"] == pytest.approx(T + 0.25, abs=1e-6)
    assert [(c["name"], c["unit"], c["number"]) for c in data["channels"]] == [
        ("L1", "V", 0), ("S1", "A", 4)]
    line_hz = r.meter.local_rate("L1", T, "f")
    for channel in data["channels"]:
        times, values = channel["t"], channel["v"]
        assert len(times) == len(values) == 400  # 0.1 s at 8000 samples/s over 2 channels
        assert times[0] < times[1] < times[-1] <= 0.1
        ups = rising_crossings(times, values)
        assert (len(ups) - 1) / (ups[-1] - ups[0]) == pytest.approx(line_hz, abs=0.01)
        peak = math.sqrt(2) * r.meter.local_rate(channel["name"], T)
        assert max(values) == pytest.approx(peak, rel=0.01)
        assert min(values) == pytest.approx(-peak, rel=0.01)
    calls = r.webapi()
    cookie = data["capture_id"]
    assert calls[0] == ("GET", "/api/capture", {"i": ""}, None)
    assert calls[1][2] == {"n": "", "d": "0.1", "c": "4"}  # dict(query): the last c wins
    assert [c[2] for c in calls[2:]] == [{"q": "", "n": str(cookie)}] * (len(calls) - 3) + [
        {"n": str(cookie)}]
    assert len(calls) >= 4  # at least one progress-only poll before the data
    assert not r.meter.capturer.busy()


async def test_a_triggered_capture_marks_the_trigger(rig: RigFactory) -> None:
    r = rig("capture")
    response = await r.ask("capture", {"channels": ["L1"], "duration_s": 0.02, "mode": "rise",
                                       "level": 0, "pretrigger_s": 0.002})
    assert response.ok, response.error
    trace = response.data["channels"][0]
    trigger = response.data["trigger"]
    assert trigger["channel"] == "L1"
    assert trigger["t"] == pytest.approx(0.002, abs=1e-6)
    at = trace["t"].index(trigger["t"])
    assert trace["v"][at - 1] < 0 <= trace["v"][at]  # a rising edge through level 0
    armed = r.webapi()[1][2]
    assert (armed["C"], armed["M"], armed["L"], armed["T"], armed["p"]) == (
        "0", "rise", "0", "1000", "0.002")


async def test_old_firmware_without_progress_queries_is_polled_plainly(
        rig: RigFactory, meter: SimMeter) -> None:
    original = meter.capturer.handle

    def firmware_4_8(query: Sequence[tuple[str, str]], now: float) -> dict[str, Any]:
        if any(k == "q" for k, _ in query):
            raise QueryError("Invalid query option: q.")
        return original(query, now)

    meter.capturer.handle = firmware_4_8  # type: ignore[method-assign]
    r = rig("capture")
    response = await r.ask("capture", {"channels": ["L2"], "duration_s": 0.01})
    assert response.ok, response.error
    assert len(response.data["channels"][0]["v"]) == 80
    polls = [c[2] for c in r.webapi()[2:]]
    assert polls[0] == {"q": "", "n": str(response.data["capture_id"])}
    assert all(p == {"n": str(response.data["capture_id"])} for p in polls[1:])
    assert len(polls) >= 3  # refused once, then capturing, then full


async def test_a_busy_capture_interface_answers_busy_and_a_retry_runs(
        rig: RigFactory, meter: SimMeter) -> None:
    meter.capturer.arm([("n", ""), ("C", "0"), ("M", "gt"), ("L", "1000")], meter.now())
    assert meter.capturer.busy()  # someone else's capture waits for a trigger
    r = rig("capture")
    payload = {"channels": ["L1"], "duration_s": 0.01, "transaction": "b"}
    busy = await r.ask("capture", payload)
    assert (busy.code, busy.transaction) == ("busy", "b")
    assert "capture interface" in (busy.error or "")
    assert [c[2].get("n") for c in r.webapi()] == [None, ""]  # channels, then the arm only
    meter.capturer.reset()
    retry = await r.ask("capture", payload)
    assert retry.ok, retry.error  # nothing happened the first time: not remembered


async def test_an_unknown_channel_is_invalid_and_nothing_is_armed(rig: RigFactory) -> None:
    r = rig("capture")
    response = await r.ask("capture", {"channels": ["L3"]})
    assert response.code == "invalid"
    assert "no channel 'L3'" in (response.error or "")
    assert r.webapi() == [("GET", "/api/capture", {"i": ""}, None)]


# -- CTid -------------------------------------------------------------------------------------


async def test_ctid_info_reads_what_the_meter_stored(rig: RigFactory, meter: SimMeter) -> None:
    r = rig("ctid")
    every = await r.ask("ctid/info", {})
    one = await r.ask("ctid/info", {"port": 2})
    none = await r.ask("ctid/info", {"port": 5})
    assert every.data == {"info": [meter.ctid.stored[p] for p in sorted(meter.ctid.stored)]}
    assert one.data == {"port": 2, "info": meter.ctid.stored[2]}
    assert none.data == {"port": 5, "info": None}


async def test_ctid_scan_completes_the_tid_handshake(rig: RigFactory, meter: SimMeter) -> None:
    r = rig("ctid-scan")
    response = await r.ask("ctid/scan", {"port": 3, "polarity": "-"})
    assert response.ok, response.error
    tid = response.data["tid"]
    assert response.data == {"port": 3, "tid": tid,
                             "sensor": {"polarity": "-", **meter.ctid.sensors[3]}}
    calls = r.webapi()
    assert calls[0] == ("POST", "/api/ctid/3", {}, {"op": "scan", "tid": tid, "polarity": "-"})
    assert calls[1:] == [("GET", "/api/ctid/3", {"tid": str(tid)}, None)] * meter.ctid.scan_polls
    assert meter.ctid.stored[3]["polarity"] == "-"
    assert meter.ctid.state == "idle"


async def test_a_scan_of_a_port_without_ctid_times_out_and_is_stopped(
        rig: RigFactory, meter: SimMeter) -> None:
    r = rig("ctid-scan")
    response = await r.ask("ctid/scan", {"port": 5, "timeout_s": 0.6})
    assert response.code == "timeout"
    assert "port 5" in (response.error or "")
    calls = r.webapi()
    assert calls[0][:2] == ("POST", "/api/ctid/5")
    assert calls[-1] == ("POST", "/api/ctid/stop", {}, {})
    assert {c[:2] for c in calls[1:-1]} == {("GET", "/api/ctid/5")}
    assert meter.ctid.state == "idle"  # measurement runs again


async def test_a_long_scan_holds_the_lane_only_per_request(rig: RigFactory,
                                                           meter: SimMeter) -> None:
    """While a scan waits for its sensor, a poller takes the lane between the scan's calls;
    and no call of the scan is made while the poller holds it."""
    r = rig("ctid-scan")
    order: list[str] = []
    original = meter.recorder.add

    def add(record: Any) -> None:
        if not r.lane.locked():
            order.append("outside the lane")
        order.append(f"{record.method} {record.path}")
        original(record)

    meter.recorder.add = add  # type: ignore[method-assign]
    scanning = asyncio.create_task(r.ask("ctid/scan", {"port": 5, "timeout_s": 0.8}))

    async def poller() -> None:
        while not scanning.done():
            async with r.lane:
                order.append("poll")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.02)

    await asyncio.gather(poller(), scanning)
    assert "outside the lane" not in order
    start, stop = order.index("POST /api/ctid/5"), order.index("POST /api/ctid/stop")
    assert order[start + 1:stop].count("poll") >= 3
    assert order[start + 1:stop].count("GET /api/ctid/5") >= 2


async def test_ctid_scans_and_flashes_share_a_cooldown_and_stop_is_never_held_back(
        rig: RigFactory, meter: SimMeter) -> None:
    r = rig("ctid-scan", "ctid-flash", ctid_cooldown_s=120)
    assert (await r.ask("ctid/scan", {"port": 1})).ok
    again = await r.ask("ctid/scan", {"port": 2})
    flash = await r.ask("ctid/flash", {"port": 2})
    assert (again.code, flash.code) == ("cooldown", "cooldown")
    assert "CTid" in (again.error or "")
    assert [c[:2] for c in r.webapi() if c[0] == "POST"] == [("POST", "/api/ctid/1")]
    stop = await r.ask("ctid/flash", {"stop": True})
    assert stop.ok, stop.error


async def test_ctid_flash_blinks_a_sensor_until_stopped(rig: RigFactory, meter: SimMeter) -> None:
    r = rig("ctid-flash")
    response = await r.ask("ctid/flash", {"port": 2})
    assert response.ok, response.error
    op = meter.ctid.operation
    assert op is not None
    assert (op.op, op.port, op.tid) == ("flash", 2, response.data["tid"])
    assert meter.ctid.state == "active"  # measurement is suspended meanwhile
    assert (await r.ask("ctid/flash", {"stop": True})).data == {"stopped": True}
    assert meter.ctid.state == "idle"
    assert r.webapi()[-1] == ("POST", "/api/ctid/stop", {}, {})


# -- logs and alerts ---------------------------------------------------------------------------


async def test_log_get_reads_the_system_kernel_and_lua_logs(rig: RigFactory,
                                                            meter: SimMeter) -> None:
    r = rig("log:system", "log:kernel", "log:lua")
    system = await r.ask("log/get", {"log": "system"})
    assert system.data == {"log": "system",
                           "entries": [{"msg": m} for m in meter.journal.system]}
    after = meter.journal.kernel_log[0][1]
    kernel = await r.ask("log/get", {"log": "kernel", "after": after})
    assert kernel.data["entries"] == [{"prio": p, "ts": float(f"{t:.6f}"), "msg": m}
                                      for p, t, m in meter.journal.kernel_log if t > after]
    assert len(kernel.data["entries"]) == len(meter.journal.kernel_log) - 1
    lua = await r.ask("log/get", {"log": "lua/main"})
    assert [e["msg"] for e in lua.data["entries"]][-1].startswith("tick ")
    assert float(r.webapi()[1][2]["after"]) == after


async def test_log_get_of_the_alert_log_filters_by_priority(rig: RigFactory,
                                                            meter: SimMeter) -> None:
    meter.raise_alert("Door open", "back door", 5)
    meter.raise_alert("Low battery", "sensor 3", 2)
    meter.raise_alert("Grid outage", "L1 lost", 7)
    r = rig("log:alert")
    response = await r.ask("log/get", {"log": "alert", "min_prio": 4})
    assert response.ok, response.error
    expected = [a for a in meter.alerts if a.prio >= 4]
    assert [(e["id"], e["name"], e["detail"], e["prio"], e["count"], e["acked"])
            for e in response.data["entries"]] == [
        (a.id, a.name, a.detail, a.prio, a.count, a.acked) for a in expected]
    assert [e["first"] for e in response.data["entries"]] == [
        pytest.approx(a.first, abs=1e-3) for a in expected]
    assert response.data["drops"] == meter.journal.drops == 0


async def test_alert_ack_acknowledges_the_given_entries(rig: RigFactory,
                                                        meter: SimMeter) -> None:
    first = meter.raise_alert("Door open", "back door", 5)
    second = meter.raise_alert("Grid outage", "L1 lost", 7)
    r = rig("alert-ack")
    response = await r.ask("alert/ack", {"ids": [second.id]})
    assert response.data == {"acked": [second.id]}
    assert [a.acked for a in meter.alerts] == [False, True]
    unknown = await r.ask("alert/ack", {"ids": [99]})
    assert unknown.code == "meter_error"
    assert "Unknown alert id" in (unknown.error or "")
    assert (await r.ask("alert/ack", {"ids": "all"})).ok
    assert all(a.acked for a in meter.alerts)
    assert first.acked


# -- Lua variables ------------------------------------------------------------------------------


async def test_lua_var_get_decodes_the_meters_json_text(rig: RigFactory,
                                                        meter: SimMeter) -> None:
    r = rig("lua-read:*")
    one = await r.ask("lua/var/get", {"name": "setpoint"})
    assert one.data == {"name": "setpoint", "value": json.loads(meter.lua.values["setpoint"]),
                        "desc": meter.lua.descs["setpoint"]}
    every = await r.ask("lua/var/get", {})
    shown = meter.lua.tree()["var"]
    assert every.data == {"vars": {n: {"value": json.loads(v["value"]), "desc": v["desc"]}
                                   for n, v in shown.items()}}


async def test_lua_var_set_writes_the_value_as_json_text(rig: RigFactory,
                                                         meter: SimMeter) -> None:
    r = rig("lua:*")
    response = await r.ask("lua/var/set", {"name": "mode", "value": "eco"})
    assert response.data == {"name": "mode", "value": "eco"}
    assert meter.lua.values["mode"] == '"eco"'
    assert r.webapi() == [("PUT", "/api/lua/var/mode/value", {}, '"eco"')]
    unknown = await r.ask("lua/var/set", {"name": "nope", "value": 1})
    assert unknown.code == "meter_error"


# -- api/get ------------------------------------------------------------------------------------


async def test_api_get_reads_any_allowed_path(rig: RigFactory) -> None:
    r = rig("api-read:/providers", "api-read:/config/var")
    push = await r.ask("api/get", {"path": "/providers/push"})
    assert push.data == {"path": "/providers/push",
                         "value": {"reply": {"providers": CATALOGUE["push"]}}}
    var = await r.ask("api/get", {"path": "/config/var/global"})
    assert var.data["value"] == {"result": r.meter.config.get(["var", "global"])}
    assert r.webapi() == [("GET", "/api/providers/push", {}, None),
                          ("GET", "/api/config/var/global", {}, None)]


async def test_api_get_masks_secret_shaped_members(rig: RigFactory, meter: SimMeter) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    meter.config.write("POST", ["var", "global"], {"site.api_key": "k-918273",
                                                   "site.note": f"token {token}"})
    r = rig("api-read:/config/var")
    response = await r.ask("api/get", {"path": "/config/var/global"})
    assert response.ok, response.error
    shown = response.data["value"]["result"]
    assert shown["site.api_key"] == "***"
    assert shown["site.note"] == "token ***"
    assert shown["billing.start_day"] == meter.config.value("var", "global", "billing.start_day")
    text = response.encode().decode()
    assert "k-918273" not in text
    assert token not in text


@pytest.mark.parametrize(("path", "why"), [
    ("/providers/../auth/logout", "a WebAPI path"),
    ("/providers/push?x=1", "a WebAPI path"),
    ("/auth/logout", "/auth"),
    ("/api/providers/push", "below /api"),
    ("providers", "a WebAPI path"),
])
async def test_api_get_refuses_paths_that_are_not_plain_reads(rig: RigFactory, path: str,
                                                              why: str) -> None:
    r = rig("api-read:/")
    response = await r.ask("api/get", {"path": path})
    assert response.code == "invalid"
    assert why in (response.error or "")
    assert r.meter.calls == []
