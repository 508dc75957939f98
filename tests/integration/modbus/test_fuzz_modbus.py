"""The Modbus server of a running gateway (in this process: the simulator polled over HTTP,
writes on, nothing allowed) under random and hostile input over raw sockets: random frames
(hypothesis), truncated MBAP headers, protocol ids other than 0, lengths 0 and 65535, every
function code 0-255, 500 connections at once and slow senders. Throughout, a well-behaved
pymodbus client keeps being answered correctly and the meter's polls keep their schedule;
whatever the server sends back is well-formed Modbus TCP, and no write reaches the meter."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import (
    CommandPolicy,
    Config,
    GatewaySection,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
)
from gateway.runtime import App
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.modbus import mbap, read_request
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

UNIT = 1
EXCEPTIONS = {0x01, 0x02, 0x03, 0x04, 0x06, 0x0B}
READS = {3, 4}
WRITES = {1, 5, 6, 15, 16}  # served with modbus.writes (FC01 reads the coils)
FRAME_TIMEOUT_S = 2.0


@dataclass
class GoodClient:
    """A pymodbus client reading the status block in a loop; every answer must be right."""

    port: int
    answers: int = 0
    failures: list[str] = field(default_factory=list)

    async def run(self) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=self.port, timeout=3, retries=0)
        assert await client.connect()
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                try:
                    rr = await client.read_input_registers(0, count=8, device_id=UNIT)
                except Exception as exc:  # a timeout or a lost connection: the failure named
                    if task.cancelling():  # pymodbus may turn the cancellation into an error
                        raise asyncio.CancelledError from exc
                    self.failures.append(repr(exc))
                    if not client.connected:
                        assert await client.connect()
                    continue
                if task.cancelling():  # Python 3.11: a reply that came with the cancellation
                    # is returned by wait_for (in pymodbus) and the cancellation dropped
                    raise asyncio.CancelledError
                if rr.isError() or rr.registers[0] != 1:
                    self.failures.append(repr(rr))
                self.answers += 1
                await asyncio.sleep(0.01)
        finally:
            client.close()


@dataclass
class Gateway:
    app: App
    good: GoodClient

    @property
    def port(self) -> int:
        assert self.app.modbus is not None
        return self.app.modbus.port


@pytest.fixture
async def gateway(tmp_path: Path, sim_meter: SimMeter, sim_server: SimServer
                  ) -> AsyncIterator[Gateway]:
    meter = MeterConfig(id="main", url=sim_server.url_for(sim_meter), username=SIM_USERNAME,
                        password=Secret(SIM_PASSWORD), poll_interval_s=0.25, timeout_s=0.2,
                        modbus_unit_id=UNIT, commands=CommandPolicy(allow=()))
    config = Config(GatewaySection(id="fuzz", state_dir=str(tmp_path / "state")), (meter,),
                    MqttConfig(enabled=False),
                    ModbusConfig(host="127.0.0.1", port=0, writes=True,
                                 frame_timeout_s=FRAME_TIMEOUT_S),
                    HttpConfig(enabled=False))
    app = App(config)
    task = asyncio.create_task(app.run(), name="app")
    await async_wait_until(
        lambda: task.done() or (app.pollers and app.pollers["main"].stats.online),
        what="the meter online")
    assert not task.done()
    assert app.modbus is not None
    good = GoodClient(app.modbus.port)
    stats = app.pollers["main"].stats
    skipped, failed = stats.polls_skipped, stats.polls_failed
    reader = asyncio.create_task(good.run(), name="good-client")
    try:
        await async_wait_until(lambda: good.answers > 0, what="the good client answered")
        yield Gateway(app, good)
        answers = good.answers
        await async_wait_until(lambda: good.answers > answers, what="still answered after")
        assert good.failures == []
        assert (stats.polls_skipped, stats.polls_failed) == (skipped, failed)  # on schedule
        assert [c for c in sim_meter.calls if c.path.startswith(("/api/ctrl", "/api/cmd"))
                or (c.path.startswith("/api/config") and c.method != "GET")] == []
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(reader, 10)  # never a hung teardown
        app.request_stop()
        assert await asyncio.wait_for(task, 15) == 0


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The response frames in ``data`` as (transaction, PDU); every frame must be whole and
    well-formed Modbus TCP for unit 1."""
    out = []
    while data:
        assert len(data) >= 9, data
        tid, protocol, length, unit = struct.unpack(">HHHB", data[:7])
        assert (protocol, unit) == (0, UNIT)
        assert 2 <= length <= 254
        pdu = data[7:6 + length]
        assert len(pdu) == length - 1, "a response cut short"
        if pdu[0] & 0x80:
            assert len(pdu) == 2
            assert pdu[1] in EXCEPTIONS
        out.append((tid, pdu))
        data = data[6 + length:]
    return out


async def exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send ``data`` and a sentinel request (transaction 0xBEEF); what comes back before the
    sentinel's answer, and whether the server closed the connection instead. Where the
    framing leaves an incomplete frame at the end, the client ends its side once the frames
    before have been answered (the frame deadline has a test of its own)."""
    stream = data + read_request(0xBEEF)
    expected, ending = expected_answers(stream)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(stream)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(timeout):
            while True:
                if ending == "incomplete" and len(frames(received)) == len(expected) \
                        and writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
                try:
                    chunk = await reader.read(65536)
                except ConnectionError:
                    return received, True
                if not chunk:
                    return received, True
                received += chunk
                if len(received) >= 11 and received[-11:-9] == b"\xbe\xef":
                    return received[:-11], False
    finally:
        writer.close()


def expected_answers(stream: bytes) -> tuple[list[int], str]:
    """The transactions the server answers, as docs/MODBUS.md describes the framing: MBAP
    frames one after the other, every complete one for unit 1 answered; a protocol id other
    than 0 or a length outside 2-254 ends the connection (``invalid``); a frame left
    incomplete waits for its deadline, and a frame that swallowed the sentinel for more
    (``incomplete``); else ``complete``: the sentinel is answered last."""
    tids = []
    sentinel = False  # the last frame read was the sentinel on its own
    while len(stream) >= 8:
        tid, protocol, length, unit = struct.unpack(">HHHB", stream[:7])
        if protocol != 0 or not 2 <= length <= 254:
            return tids, "invalid"
        if len(stream) < 6 + length:
            break
        if unit == UNIT:
            tids.append(tid)
        sentinel = stream == read_request(0xBEEF)
        stream = stream[6 + length:]
    return tids, "complete" if sentinel else "incomplete"


mbap_frames = st.builds(
    lambda tid, protocol, length, unit, pdu: struct.pack(">HHHB", tid, protocol, length, unit)
    + pdu,
    st.integers(0, 0xBEEE), st.sampled_from([0, 0, 0, 0, 1, 0xFFFF]),
    st.one_of(st.integers(0, 0xFFFF), st.integers(2, 20)), st.sampled_from([UNIT, UNIT, 0, 7, 255]),
    st.binary(max_size=30))
well_framed = st.builds(
    lambda tid, fc, body: mbap(tid, 2 + len(body), UNIT) + bytes([fc]) + body,
    st.integers(0, 0xBEEE), st.one_of(st.sampled_from(sorted(READS | WRITES)),
                                      st.integers(0, 255)), st.binary(max_size=250))
streams = st.lists(st.one_of(well_framed, well_framed, mbap_frames, st.binary(max_size=40)),
                   min_size=1, max_size=6).map(b"".join)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=streams)
async def test_random_bytes_get_well_formed_answers_in_order(
        gateway: Gateway, data: bytes) -> None:
    received, closed = await exchange(gateway.port, data)
    expected, ending = expected_answers(data + read_request(0xBEEF))
    answered = [tid for tid, _ in frames(received)]
    if ending == "complete":  # the sentinel was read as the last frame and answered
        assert expected[-1] == 0xBEEF
        assert (answered, closed) == (expected[:-1], False)  # every one, in order
    else:  # a bad header (the server hangs up) or an unfinished frame: what came before
        assert (answered, closed) == (expected, True)


async def test_every_function_code_is_answered_as_documented(gateway: Gateway) -> None:
    requests = b"".join(mbap(fc, 6, UNIT) + bytes([fc]) + b"\x00\x00\x00\x01"
                        for fc in range(256))
    received, closed = await exchange(gateway.port, requests)
    assert not closed
    answers = dict(frames(received))
    assert sorted(answers) == list(range(256))
    for fc, pdu in answers.items():
        if fc in READS:
            assert pdu == bytes([fc, 2, 0, 1]), fc  # status register 0: online
        elif fc == 1:
            assert pdu == bytes([1, 1, 0]), fc  # coil 0: relay 1 not known closed
        elif fc in (5, 15, 16):
            assert pdu == bytes([fc | 0x80, 0x03]), fc  # a malformed write: bad value
        elif fc == 6:
            assert pdu == bytes([0x86, 0x02]), fc  # register 0 is not the command register
        else:
            assert pdu == bytes([(fc | 0x80) & 0xFF, 0x01]), fc  # illegal function


@pytest.mark.parametrize("header", [
    pytest.param(mbap(1, 0) + b"\x04", id="length-0"),
    pytest.param(mbap(1, 1) + b"\x04", id="length-1"),
    pytest.param(mbap(1, 255) + b"\x04", id="length-255"),
    pytest.param(mbap(1, 0xFFFF) + b"\x04", id="length-65535"),
    pytest.param(mbap(1, 6, protocol=1) + b"\x04\x00\x00\x00\x01", id="protocol-1"),
    pytest.param(mbap(1, 6, protocol=0xFFFF) + b"\x04\x00\x00\x00\x01", id="protocol-65535"),
])
async def test_impossible_headers_close_the_connection_unanswered(
        gateway: Gateway, header: bytes) -> None:
    assert gateway.app.modbus is not None
    before = gateway.app.modbus.stats.frames_invalid
    received, closed = await exchange(gateway.port, header)
    assert (received, closed) == (b"", True)
    assert gateway.app.modbus.stats.frames_invalid == before + 1


async def test_truncated_frames_are_dropped_at_the_frame_deadline(gateway: Gateway) -> None:
    """Each of the eleven ways to cut a request short, all at once."""
    assert gateway.app.modbus is not None
    before = gateway.app.modbus.stats.frame_timeouts

    async def cut_at(n: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        try:
            writer.write(read_request(5)[:n])
            return await asyncio.wait_for(reader.read(), 10 * FRAME_TIMEOUT_S)
        finally:
            writer.close()

    assert await asyncio.gather(*(cut_at(n) for n in range(1, 12))) == [b""] * 11
    assert gateway.app.modbus.stats.frame_timeouts == before + 11


async def one_request(port: int, tid: int, source: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(read_request(tid, 0, 1))
        head = await asyncio.wait_for(reader.readexactly(7), 30)
        assert struct.unpack(">HHHB", head)[0] == tid
        return await asyncio.wait_for(reader.readexactly(head[5] - 1), 30)
    finally:
        writer.close()


async def test_five_hundred_connections_at_once_are_all_answered(gateway: Gateway) -> None:
    answers = await asyncio.gather(*(one_request(gateway.port, i, f"127.0.0.{2 + i % 5}")
                                     for i in range(500)))
    assert answers == [b"\x04\x02\x00\x01"] * 500  # 100 per address: each within its share


async def slow_sender(port: int, tid: int, every_s: float, source: str) -> bytes:
    """A request sent one byte at a time, complete well within the frame deadline."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        for byte in read_request(tid, 0, 1):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
        head = await asyncio.wait_for(reader.readexactly(7), 10)
        assert struct.unpack(">HHHB", head)[0] == tid
        return await asyncio.wait_for(reader.readexactly(head[5] - 1), 10)
    finally:
        writer.close()


async def test_slow_senders_within_the_deadline_are_answered(gateway: Gateway) -> None:
    answers = await asyncio.gather(*(slow_sender(gateway.port, i, FRAME_TIMEOUT_S / 48,
                                                 f"127.0.0.{2 + i % 2}")
                                     for i in range(100)))  # twelve bytes in half a second
    assert answers == [b"\x04\x02\x00\x01"] * 100
