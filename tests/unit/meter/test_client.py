"""WebApiClient replies -> project types and errors (MockTransport, no sockets)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from gateway.config import MeterConfig
from gateway.errors import (
    CallPending,
    CommandError,
    ConfigError,
    MeterProtocolError,
    MeterReportedError,
    MeterTimeout,
    MeterUnavailable,
)
from gateway.meter import WebApiClient
from gateway.secret import Secret
from tests.support.fake_meter import FakeMeter, reply

INT64_MAX = "9223372036854775807"
REGISTERS: list[dict[str, Any]] = [
    {"name": "use", "type": "P", "idx": 0, "rate": 1500},
    {"name": "Grid", "type": "P", "idx": 3, "did": 0, "rate": -412.5},
    {"name": "Reactive", "type": "var", "idx": 5, "did": 1, "rate": 10},
    {"name": "Reactive PQ", "type": "PQ", "idx": 6, "did": 2, "rate": 11},
    {"name": "Odd", "type": "Zz", "idx": 7, "did": 3, "rate": 3},
    {"name": "Volts", "type": "V", "idx": 9, "did": 4, "rate": 120.1},
]
ROW = ["7200000", INT64_MAX, "-3600000", "1800000", "9007199254740993", "120500"]


def register_reply(registers: list[dict[str, Any]] = REGISTERS, row: list[Any] = ROW,
                   ts: str = "1700000123.000420096") -> dict[str, Any]:
    return {"ts": ts, "registers": registers,
            "ranges": [{"ts": ts.split(".")[0], "delta": 1, "rows": [row]}]}


def query_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.url.query.decode(), keep_blank_values=True)


async def read_with(body: Any) -> Any:
    fake = FakeMeter()
    fake.route("GET", "/api/register", lambda _r: reply(body) if not isinstance(body, bytes)
               else httpx.Response(200, content=body))
    async with fake.client() as client:
        return await client.read()


async def test_read_converts_rates_and_exact_cumulatives() -> None:
    reading = await read_with(register_reply())
    values = reading.by_name()
    assert reading.meter == "m1"
    assert reading.ts == pytest.approx(1700000123.00042)
    grid = values["Grid"]
    assert grid.raw == 9223372036854775807  # exact: a float would be ...808
    assert grid.cumulative == pytest.approx(9223372036854775807 / 3_600_000)
    assert (grid.rate, grid.unit, grid.cumulative_unit) == (-412.5, "W", "kWh")
    assert values["use"].cumulative == pytest.approx(2.0)
    for name in ("Reactive", "Reactive PQ"):
        assert values[name].unit == "var"
        assert values[name].cumulative_unit == "kvarh"
    assert values["Reactive"].cumulative == pytest.approx(-1.0)
    assert values["Reactive PQ"].cumulative == pytest.approx(0.5)
    odd = values["Odd"]
    assert (odd.type_code, odd.unit, odd.raw, odd.rate) == ("Zz", "", 9007199254740993, 3.0)
    assert values["Volts"].cumulative == pytest.approx(120.5)
    assert values["Volts"].cumulative_unit == "V·s"
    assert [v.name for v in reading.registers] == ["use", "Grid", "Reactive", "Reactive PQ",
                                                   "Odd", "Volts"]


async def test_read_asks_for_rates_now_and_virtual_values() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/register", lambda _r: reply(register_reply()))
    async with fake.client() as client:
        await client.read()
    q = query_of(fake.requests_to("/api/register")[0])
    assert q["time"] == ["now-1:1:now"]  # the newest row and the one before it
    assert q["virtual"] == ["value"]
    assert "rate" in q
    assert "reg" not in q


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"{not json", "body", "not valid JSON"),
        ([1, 2], "body", "expected an object"),
        ({"ts": "1", "ranges": []}, "registers", "expected an array"),
        (register_reply(row=["1", 2, "3", "4", "5", "6"]), "ranges[0].rows[0][1]",
         "expected a decimal string"),
        (register_reply(row=["1", "2", "3", "4", "5", "6.5"]), "ranges[0].rows[0][5]",
         "expected a decimal string"),
        (register_reply(row=["1", "2"]), "ranges[0].rows[0]", "expected an array of 6"),
        ({**register_reply(), "ranges": []}, "ranges", "expected one range"),
        ({**register_reply(), "ts": None}, "ts", "expected a timestamp"),
        (register_reply(registers=[{**REGISTERS[0], "rate": "12"}, *REGISTERS[1:]]),
         "registers[0].rate", "expected a number"),
        (register_reply(registers=[{"name": "x", "idx": 0}]), "registers[0].type",
         "expected a string"),
        (register_reply(registers=[{"name": "x", "type": "P", "idx": "0"}]), "registers[0].idx",
         "expected an integer"),
    ],
)
async def test_bad_register_replies_name_the_field(body: Any, field: str, message: str) -> None:
    with pytest.raises(MeterProtocolError, match=message) as info:
        await read_with(body)
    assert info.value.field == field
    assert info.value.meter == "m1"
    assert str(info.value).startswith(f"meter m1: {field}: ")


async def test_error_member_with_http_200_is_a_reported_error() -> None:
    with pytest.raises(MeterReportedError, match="Invalid query option") as info:
        await read_with({"error": "Invalid query option"})
    assert info.value.field == "error"
    assert "GET /register" in str(info.value)


async def test_register_set_change_is_noticed_and_counted() -> None:
    fake = FakeMeter()
    current = {"reply": register_reply()}
    fake.route("GET", "/api/register", lambda _r: reply(current["reply"]))
    async with fake.client() as client:
        await client.read()
        await client.read()
        assert client.register_set_changed == 0
        moved = [dict(r) for r in REGISTERS]
        moved[1]["idx"], moved[2]["idx"] = 5, 3  # Grid and Reactive swap places
        moved.sort(key=lambda r: r["idx"])
        current["reply"] = register_reply(registers=moved)
        reading = await client.read()
        assert client.register_set_changed == 1
        # row columns follow idx: idx 3 (now Reactive) gets the second value
        assert reading.by_name()["Reactive"].raw == int(INT64_MAX)
        assert reading.by_name()["Grid"].raw == -3600000
        await client.read()
        assert client.register_set_changed == 1


async def test_named_read_selects_by_idx_and_follows_a_moved_register() -> None:
    fake = FakeMeter()
    state: dict[str, list[dict[str, Any]]] = {"registers": [dict(r) for r in REGISTERS]}

    def register(request: httpx.Request) -> httpx.Response:
        q = query_of(request)
        regs = sorted(state["registers"], key=lambda r: r["idx"])
        if q.get("virtual") == ["formula"]:
            return reply({"ts": "1", "registers": [
                {k: v for k, v in r.items() if k != "rate"} for r in regs]})
        wanted = {int(i) for i in q["reg"][0].split("+")}
        chosen = [r for r in regs if r["idx"] in wanted]
        return reply(register_reply(chosen, [str(r["idx"] * 1000) for r in chosen]))

    fake.route("GET", "/api/register", register)
    async with fake.client() as client:
        reading = await client.read(["Volts", "Grid"])
        assert [v.name for v in reading.registers] == ["Grid", "Volts"]
        assert query_of(fake.requests_to("/api/register")[-1])["reg"] == ["3+9"]
        assert reading.by_name()["Volts"].raw == 9000
        state["registers"][5]["idx"] = 2  # the meter renumbered Volts
        reading = await client.read(["Volts", "Grid"])
        assert reading.by_name()["Volts"].raw == 2000
        assert query_of(fake.requests_to("/api/register")[-1])["reg"] == ["2+3"]
        assert client.register_set_changed == 1


async def test_register_info_reports_formulas_and_virtual_registers() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/register", {"ts": "1", "registers": [
        {"name": "Solar+", "type": "P", "idx": 4, "did": 1},
        {"name": "use", "type": "P", "idx": 0, "formula": '+"Grid"+"Solar+"'},
    ]})
    async with fake.client() as client:
        infos = await client.register_info()
        assert await client.register_info() == infos
        assert len(fake.requests_to("/api/register")) == 1  # cached
        await client.register_info(refresh=True)
        assert len(fake.requests_to("/api/register")) == 2
    assert [i.name for i in infos] == ["use", "Solar+"]
    assert infos[0].virtual
    assert infos[0].formula == '+"Grid"+"Solar+"'
    assert not infos[1].virtual
    assert infos[1].did == 1
    assert query_of(fake.requests_to("/api/register")[0])["virtual"] == ["formula"]


async def test_history_rows_come_back_oldest_first_across_ranges() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/register", {
        "ts": "1700000100", "registers": [{"name": "B", "type": "P", "idx": 2, "did": 0},
                                          {"name": "A", "type": "V", "idx": 1, "did": 1}],
        "ranges": [
            {"ts": "1700000100", "delta": 1, "rows": [["11", "21"], ["10", "20"]]},
            {"ts": "1700000040", "delta": 60.0, "rows": [["9", "19"], ["8", "18"]]},
        ]})
    async with fake.client() as client:
        rows = await client.history(1699999980, 1, 1700000100.5, max_rows=10)
    assert rows == [
        (1699999980.0, {"A": 8, "B": 18}),
        (1700000040.0, {"A": 9, "B": 19}),
        (1700000099.0, {"A": 10, "B": 20}),
        (1700000100.0, {"A": 11, "B": 21}),
    ]
    q = query_of(fake.requests_to("/api/register")[0])
    assert q["time"] == ["1699999980:1:1700000100.5"]
    assert q["max-rows"] == ["10"]


async def test_identity_comes_from_one_filtered_sys_call_and_the_hostname() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/sys", {"result": {
        "sn": "G10400", "model": "EG4115", "uptime": 1232588.28,
        "version": {"firmware": "4.6", "hardware": "3EA"}}})
    fake.route("GET", "/api/config/net/hostname", {"result": "eGauge42"})
    async with fake.client() as client:
        ident = await client.identity()
    assert (ident.serial, ident.model, ident.firmware, ident.hostname) == (
        "G10400", "EG4115", "4.6", "eGauge42")
    assert ident.uptime_s == pytest.approx(1232588.28)
    assert ident.extra["hardware"] == "3EA"
    assert query_of(fake.requests_to("/api/sys")[0])["filter"] == ["{sn,model,version,uptime}"]


async def test_local_values_section() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/local", {"ts": "1", "values": {
        "L1": {"type": "V", "rate": {"n": 121.3, "m": 0.02, "f": 60.01}},
        "Tpcb": {"type": "T", "rate": {"n": 38.2}}}})
    async with fake.client() as client:
        values = {v.name: v for v in await client.local()}
    assert (values["L1"].unit, values["L1"].normal, values["L1"].freq) == ("V", 121.3, 60.01)
    assert (values["Tpcb"].unit, values["Tpcb"].normal, values["Tpcb"].mean) == ("°C", 38.2, None)


async def test_config_get_returns_the_etag_and_set_sends_if_match() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/config/net/hostname",
               lambda _r: reply({"result": "eGauge42"}, headers={"ETag": '"abc"'}))
    fake.route("PUT", "/api/config/net/hostname", {"status": "OK"})
    fake.route("POST", "/api/config/net/ntp/server", {"status": "OK"})
    fake.route("PUT", "/api/config/db/epoch",
               lambda _r: reply({"error": "Precondition failed."}, 412))
    async with fake.client() as client:
        assert await client.get_config("/net/hostname") == ("eGauge42", '"abc"')
        await client.set_config("/net/hostname", "meter-7", etag='"abc"')
        await client.set_config("/net/ntp/server", ["pool.ntp.org"], etag=None, merge=True)
        with pytest.raises(MeterReportedError, match="Precondition failed"):
            await client.set_config("/db/epoch", "0", etag='"old"')
        for bad in ("net/hostname", "/net/../user", "/net//x"):
            with pytest.raises(CommandError, match="bad configuration path"):
                await client.get_config(bad)
    put = fake.requests_to("/api/config/net/hostname", "PUT")[0]
    assert json.loads(put.content) == "meter-7"
    assert put.headers["If-Match"] == '"abc"'
    post = fake.requests_to("/api/config/net/ntp/server", "POST")[0]
    assert json.loads(post.content) == ["pool.ntp.org"]
    assert "If-Match" not in post.headers


async def test_cmd_and_ctrl_calls() -> None:
    fake = FakeMeter()
    polls = {"n": 0}

    def result(_r: httpx.Request) -> httpx.Response:
        polls["n"] += 1
        if polls["n"] < 2:
            return reply({"error": "EAGAIN: Call is pending."})
        return reply({"result": 5})

    fake.route("POST", "/api/cmd/clear", {"status": "OK"})
    fake.route("GET", "/api/ctrl/device", {"result": [{"model": "PRM3", "sn": "7"}]})
    fake.route("POST", "/api/ctrl/call", {"result": {"tid": 4294967360}})
    fake.route("GET", "/api/ctrl/call/4294967360", result)
    async with fake.client() as client:
        assert await client.cmd("clear", "excess") == {"status": "OK"}
        devices = await client.ctrl_devices({"interface": "relay"})
        tid = await client.ctrl_call({"model": "PRM3"}, "relay.close", [0])
        with pytest.raises(CallPending):
            await client.ctrl_result(tid)
        assert await client.ctrl_result(tid) == 5
        with pytest.raises(CommandError):
            await client.cmd("../reboot")
    assert devices == [{"model": "PRM3", "sn": "7"}]
    assert tid == 4294967360
    assert json.loads(fake.requests_to("/api/cmd/clear")[0].content) == "excess"
    assert query_of(fake.requests_to("/api/ctrl/device")[0])["attrs"] == ['{"interface":"relay"}']
    call = json.loads(fake.requests_to("/api/ctrl/call", "POST")[0].content)
    assert call == {"attrs": {"model": "PRM3"}, "method": "relay.close", "args": [0]}


@pytest.mark.parametrize(
    ("exc", "error", "text"),
    [
        (httpx.ReadTimeout("read timed out"), MeterTimeout, "no answer within 1.5 s"),
        (httpx.ConnectTimeout("connect timed out"), MeterTimeout, "no answer within 1.5 s"),
        (httpx.ConnectError("[Errno 111] Connection refused"), MeterUnavailable, "cannot connect"),
        (httpx.RemoteProtocolError("peer closed"), MeterUnavailable, "peer closed"),
    ],
)
async def test_transport_failures_become_meter_errors(
    exc: Exception, error: type[Exception], text: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    client = WebApiClient("m1", "http://meter.test", "owner", Secret("pw"), timeout_s=1.5,
                         transport=httpx.MockTransport(fail))
    with pytest.raises(error, match=text) as info:
        await client.read()
    assert str(info.value).startswith("meter m1: ")
    await client.aclose()


@pytest.mark.parametrize("url", ["ftp://meter", "meter.local", "http://u:p@meter", "http://"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        WebApiClient("m1", url, "owner", Secret("pw"))


def test_missing_ca_bundle_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="CA bundle"):
        WebApiClient("m1", "https://meter", "owner", Secret("pw"),
                    verify_tls=str(tmp_path / "none.pem"))


def test_from_config_and_api_url() -> None:
    cfg = MeterConfig(id="main", url="https://egauge1.local/", username="owner",
                      password=Secret("pw"), timeout_s=2.0)
    client = WebApiClient.from_config(cfg)
    assert client.meter_id == "main"
    assert client.url == "https://egauge1.local/api"
    assert "pw" not in repr(client)


async def test_a_closed_client_refuses_requests() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/register", lambda _r: reply(register_reply()))
    client = fake.client()
    await client.read()
    await client.aclose()
    await client.aclose()  # closing twice is harmless
    with pytest.raises(MeterUnavailable, match="closed"):
        await client.read()


def database_reply(request: httpx.Request) -> httpx.Response:
    """A meter's database: one row a second, cumulative ``10 * ts``, newest first."""
    start, _step, end = (int(float(x)) for x in query_of(request)["time"][0].split(":"))
    rows = [[str(10 * ts)] for ts in range(end, start - 1, -1)]
    return reply({"ts": str(end), "registers": [{"name": "Grid", "type": "P", "idx": 0}],
                  "ranges": [{"ts": str(end), "delta": 1, "rows": rows}]})


async def test_second_reader_of_seconds_just_read_is_answered_without_a_request() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/register", database_reply)
    async with fake.client() as client:
        first = await client.history(100, 1, 103, max_rows=600)  # the energy counters
        again = await client.history(101, 1, 102, max_rows=2)  # the history backfill
        assert len(fake.requests_to("/api/register")) == 1
        assert again == [(101.0, {"Grid": 1010}), (102.0, {"Grid": 1020})]
        assert again == first[1:3]
        await client.history(102, 1, 104, max_rows=3)  # reaches past it: asked
        await client.history(100, 2, 102)  # another step: asked
        assert len(fake.requests_to("/api/register")) == 3


async def test_the_rows_of_polls_answer_the_request_for_a_skipped_second() -> None:
    fake = FakeMeter()
    second = [100]

    def poll_reply(request: httpx.Request) -> httpx.Response:
        if query_of(request)["time"] != ["now-1:1:now"]:
            return database_reply(request)
        ts = second[0]  # the newest row and the one before it, newest first
        rows = [[str(10 * ts)], [str(10 * (ts - 1))]]
        return reply({"ts": f"{ts}.5", "registers": [
            {"name": "Grid", "type": "P", "idx": 0, "did": 0, "rate": 10.0}],
            "ranges": [{"ts": str(ts), "delta": 1, "rows": rows}]})

    fake.route("GET", "/api/register", poll_reply)
    async with fake.client() as client:
        first = await client.read()
        second[0] = 102  # a late poll: the meter's second 101 was not polled
        late = await client.read()
        assert (first.row, late.row) == (100, 102)
        # what the energy counters ask (the seconds from the last counted to the newest)
        # and then the history backfill (the stored row before the gap and the gap)
        counted = await client.history(100, 1, 102, max_rows=600)
        published = await client.history(100, 1, 101, max_rows=2)
        assert len(fake.requests_to("/api/register")) == 2  # the two polls, nothing more
    assert counted == [(float(ts), {"Grid": 10 * ts}) for ts in (100, 101, 102)]
    assert published == counted[:2]


async def test_a_poll_of_some_registers_leaves_database_requests_to_the_meter() -> None:
    fake = FakeMeter()
    fake.route("GET", "/api/register", lambda r: database_reply(r) if ":" in query_of(r).get(
        "time", [""])[0] and "rate" not in query_of(r) else reply(register_reply()))
    async with fake.client() as client:
        await client.read(["use", "Grid"])  # its rows hold two registers, not every one
        reading = await client.read(["use", "Grid"])
        assert reading.row is not None
        await client.history(reading.row - 1, 1, reading.row)
        asked = [r for r in fake.requests_to("/api/register") if "rate" not in query_of(r)
                 and ":" in query_of(r).get("time", [""])[0]]
        assert len(asked) == 1  # the meter was asked: the polls' rows were not kept
