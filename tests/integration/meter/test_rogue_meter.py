"""The WebAPI client against a rogue "meter" (a raw asyncio server, tests/support/rogue_meter.py)
that logs it in and then answers ``/api/register`` with what no eGauge sends: malformed JSON,
wrong types, ``NaN``, JSON nested a hundred thousand deep, HTML error pages, redirects, huge,
endless and trickling bodies, bytes that are not HTTP. Each ends in a meter error that names
the problem within the client's time limit, memory stays bounded, and the same client reads
normally again once the meter behaves."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import ModbusConfig
from gateway.errors import (
    MeterError,
    MeterProtocolError,
    MeterReplyTooLarge,
    MeterReportedError,
    MeterTimeout,
    MeterUnavailable,
)
from gateway.meter import WebApiClient
from gateway.meter.channel import MAX_REPLY_BYTES
from gateway.model import Reading
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import gateway_config, running_app
from tests.support.rogue_meter import (
    RogueMeter,
    endless,
    json_body,
    register_reply,
    response,
    rogue_meter,
    send,
    trickle,
)
from tests.support.simulator import SIM_PASSWORD
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 1.0
HTML = b"<!DOCTYPE html><html><head><title>500</title></head><body><h1>Oops</h1></body></html>"
VALID = json.dumps(register_reply()).encode()

CASES: dict[str, tuple[Any, type[MeterError], str]] = {
    "malformed_json": (send(response(200, VALID[:len(VALID) // 2])), MeterProtocolError,
                       "not valid JSON"),
    "wrong_types": (json_body({"ts": "x", "registers": "all", "ranges": {}}),
                    MeterProtocolError, "registers: expected an array"),
    "nan": (send(response(200, VALID.replace(b"1200.5", b"NaN"))), MeterProtocolError,
            "not valid JSON"),
    "infinite_number": (send(response(200, VALID.replace(b"1200.5", b"1e999"))),
                        MeterProtocolError, "expected a finite number"),
    "deep_nesting": (send(response(200, b"[" * 100_000 + b"]" * 100_000)),
                     MeterProtocolError, "not valid JSON"),
    "html_error_page": (send(response(500, HTML, "text/html")), MeterReportedError, "HTTP 500"),
    "html_instead_of_json": (send(response(200, HTML, "text/html")), MeterProtocolError,
                             "not valid JSON"),
    "redirect": (send(response(302, HTML, "text/html",
                               (("Location", "http://login.example.invalid/"),))),
                 MeterReportedError, "HTTP 302, a redirect (not followed)"),
    "huge_body": (send(response(200, b" " * (MAX_REPLY_BYTES + 1) + VALID)), MeterReplyTooLarge,
                  "larger than 4194304 bytes"),
    "endless_chunked_body": (endless(), MeterReplyTooLarge, "larger than 4194304 bytes"),
    "endless_body_of_a_terabyte": (endless(declared=10**12), MeterReplyTooLarge,
                                   "1000000000000 bytes announced"),
    "trickling_body": (trickle(VALID, 0.05), MeterTimeout, "no answer within 1 s"),
    "not_http_at_all": (send(b"\x00\xffSSH-2.0-OpenSSH\r\n\r\n"), MeterUnavailable, ""),
    "headers_that_never_end": (endless(b"X-Junk: " + b"a" * 60_000 + b"\r\n", declared=0),
                               MeterError, ""),
}


HEAVY = ("endless_chunked_body", "endless_body_of_a_terabyte", "huge_body", "trickling_body",
         "deep_nesting", "headers_that_never_end", "not_http_at_all", "html_error_page",
         "redirect")


def client_for(rogue: RogueMeter) -> WebApiClient:
    return WebApiClient("rogue", rogue.url, "owner", Secret("pw"), timeout_s=TIMEOUT_S)


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_rogue_reply_is_a_meter_error_and_the_client_recovers(case: str) -> None:
    answer, error, text = CASES[case]
    async with rogue_meter(answer) as rogue, client_for(rogue) as client:
        with pytest.raises(error) as info:
            await asyncio.wait_for(client.read(), 10 * TIMEOUT_S)
        assert text in str(info.value)
        rogue.answer = json_body(register_reply())
        reading = await asyncio.wait_for(client.read(), 10 * TIMEOUT_S)
    assert [v.name for v in reading.registers] == ["Grid", "Solar+"]
    assert reading.by_name()["Grid"].rate == 1200.5


@pytest.mark.parametrize("declared", [None, 10**12])
async def test_an_endless_body_does_not_grow_memory_beyond_the_reply_limit(
        declared: int | None) -> None:
    async with rogue_meter(endless(declared=declared)) as rogue, client_for(rogue) as client:
        tracemalloc.start()
        try:
            for _ in range(3):
                with pytest.raises(MeterReplyTooLarge):
                    await asyncio.wait_for(client.read(), 10 * TIMEOUT_S)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert rogue.requests == 3
    assert peak < 3 * MAX_REPLY_BYTES  # the limit once, plus joining what was kept


edge_values = st.sampled_from(["", "nan", "inf", "-inf", "-1", "1e400", "9" * 30, "0x10",
                               "1700000000.5", " 42 ", 2**63, -(2**63) - 1, 10**400, 1e308,
                               -0.0, True, [], {}])
scalars = st.one_of(edge_values, edge_values, st.none(), st.integers(),
                    st.floats(allow_nan=False), st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
PLACES = [("ts",), ("registers",), ("ranges",), ("registers", 0), ("registers", 1, "name"),
          ("registers", 0, "type"), ("registers", 1, "idx"), ("registers", 0, "rate"),
          ("registers", 1, "did"), ("ranges", 0), ("ranges", 0, "rows"),
          ("ranges", 0, "rows", 0), ("ranges", 0, "rows", 0, 1), ("ranges", 0, "ts")]


def replace_at(tree: Any, place: tuple[str | int, ...], value: Any) -> None:
    """Put ``value`` at ``place`` in ``tree`` if that place still exists."""
    node = tree
    for key in place[:-1]:
        if (isinstance(node, dict) and isinstance(key, str) and key in node) or \
                (isinstance(node, list) and isinstance(key, int) and key < len(node)):
            node = node[key]
        else:
            return
    last = place[-1]
    if (isinstance(node, dict) and isinstance(last, str)) or \
            (isinstance(node, list) and isinstance(last, int) and last < len(node)):
        node[last] = value


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    """A valid reply with one to three places replaced by any JSON value, or any value, or
    any bytes."""
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "value", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "value":
        return json.dumps(draw(json_values)).encode()
    reply = copy.deepcopy(register_reply())
    for place in draw(st.lists(st.sampled_from(PLACES), min_size=1, max_size=3)):
        replace_at(reply, place, draw(json_values))
    return json.dumps(reply).encode()


@pytest.fixture
async def rogue() -> Any:
    async with RogueMeter() as server:
        yield server


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=replies())
async def test_any_reply_is_a_reading_of_finite_values_or_a_meter_error(
        rogue: RogueMeter, body: bytes) -> None:
    rogue.answer = send(response(200, body))
    async with client_for(rogue) as client:
        try:
            reading = await asyncio.wait_for(client.read(), 10 * TIMEOUT_S)
        except MeterError:  # anything else escaping fails the test
            return
    assert isinstance(reading, Reading)
    assert math.isfinite(reading.ts)
    for value in reading.registers:
        assert value.rate is None or math.isfinite(value.rate)
        assert value.cumulative is None or math.isfinite(value.cumulative)


async def test_a_rogue_meter_never_delays_the_other_meters_or_the_modbus_clients(
        sim_server: SimServer, sim_meter: SimMeter, broker: Broker, topic_prefix: str,
        tmp_path: Path) -> None:
    """The gateway polls a good meter and the rogue one, which goes through the cases above
    that load the gateway most, for two of its polls each: the good meter's polls keep every
    slot and a Modbus client reading it is answered throughout."""
    async with RogueMeter() as rogue:
        base = gateway_config(broker, topic_prefix, tmp_path / "state",
                              [("good", sim_server.url_for(sim_meter)), ("rogue", rogue.url)],
                              poll_interval_s=0.25, offline_after=2)
        good, bad = base.meters
        bad = replace(bad, modbus_unit_id=2, poll_interval_s=0.1, timeout_s=0.09)  # retries
        config = replace(base, meters=(replace(good, password=Secret(SIM_PASSWORD)), bad),
                         modbus=ModbusConfig(host="127.0.0.1", port=0))
        async with running_app(config) as app:
            poller, output = app.pollers["good"], app.modbus
            assert output is not None
            await async_wait_until(lambda: poller.stats.online and output.listening,
                                   what="the good meter online, Modbus listening")
            modbus = AsyncModbusTcpClient("127.0.0.1", port=output.port, timeout=3, retries=0)
            assert await modbus.connect()
            try:
                stats = poller.stats
                polls = stats.polls_ok
                for case in HEAVY:
                    rogue.answer = CASES[case][0]
                    seen = rogue.requests
                    while rogue.requests < seen + 2:
                        read = await modbus.read_input_registers(0, count=2, device_id=1)
                        assert not read.isError(), case
                        assert read.registers[0] == 1, case  # the good meter: online
                        await asyncio.sleep(0.05)
                    # every slot of the good meter polled, none failed or skipped
                    assert (stats.polls_failed, stats.polls_skipped) == (0, 0), case
                assert stats.polls_ok > polls + len(HEAVY)
            finally:
                modbus.close()
            assert app.pollers["rogue"].stats.online is False
