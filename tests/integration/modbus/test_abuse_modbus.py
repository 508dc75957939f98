"""The Modbus server against clients that try to hold it: trickling frames, many connections
from one address, addresses outside ``modbus.allow_from``, frames that never complete, and
floods of events that would each log a line. Raw sockets from several loopback addresses
(127.0.0.2, 127.0.0.3, ...) stand for different client machines."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import HttpConfig, ModbusConfig
from gateway.modbus.server import ModbusServer
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.modbus import TS, address_of, mbap, online_output, read_request
from tests.support.mqtt import gateway_config, running_app
from tests.support.simulator import SIM_PASSWORD
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

GOOD = "127.0.0.1"
LIMIT = 300  # connections the server of the lockout test admits
ATTACKERS = 5  # client addresses of the tricklers: 127.0.0.2-127.0.0.6
TRICKLE_S = 2.0  # one byte of a valid frame every this many seconds


async def connect(port: int, source: str = GOOD
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10.0) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout``."""
    try:
        return await asyncio.wait_for(reader.read(256), timeout) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def read_answer(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readexactly(7), timeout)
    tid, _, length, _ = struct.unpack(">HHHB", head)
    return tid, await asyncio.wait_for(reader.readexactly(length - 1), timeout)


@contextlib.asynccontextmanager
async def serving(server: ModbusServer) -> AsyncIterator[ModbusServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@dataclass
class Trickling:
    """Clients that send one byte of a valid request every ``every_s`` and connect again
    whenever the server drops them."""

    port: int
    every_s: float
    stop: asyncio.Event
    connects: int = 0

    async def client(self, source: str) -> None:
        frame = read_request(1)
        while not self.stop.is_set():
            try:
                reader, writer = await connect(self.port, source)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            self.connects += 1
            try:
                for i in range(len(frame)):
                    writer.write(frame[i:i + 1])
                    await writer.drain()
                    if self.stop.is_set() or await closed_by_server(reader, self.every_s):
                        break
            except (ConnectionError, TimeoutError):
                pass
            finally:
                writer.close()
            await asyncio.sleep(0.1)  # then straight back in


async def served(port: int, address: int, bound_s: float) -> tuple[int, bytes]:
    """A well-behaved client: connect, send one request, read the answer; when the server
    refuses the connection, try again. The number of attempts and the answer's PDU."""
    deadline = time.monotonic() + bound_s
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        reader, writer = await connect(port)
        try:
            writer.write(read_request(attempts, address, 2))
            tid, pdu = await read_answer(reader, timeout=2)
            assert tid == attempts
            return attempts, pdu
        except (asyncio.IncompleteReadError, ConnectionError):
            await asyncio.sleep(0.1)  # refused: closed at once
        finally:
            writer.close()
    pytest.fail(f"the well-behaved client was not served within {bound_s} s "
                f"({attempts} attempts)")


async def test_trickling_clients_at_the_limit_do_not_lock_out_a_well_behaved_one(
        tmp_path: Path) -> None:
    images, sim = online_output(tmp_path)
    grid = address_of(sim, "Grid")
    expected = struct.pack(">f", sim.rate("Grid", TS))
    server = ModbusServer("127.0.0.1", 0, images.image, max_connections=LIMIT,
                          per_address=LIMIT // ATTACKERS, frame_timeout_s=5.0)
    stop = asyncio.Event()
    attack = Trickling(0, TRICKLE_S, stop)
    async with serving(server), asyncio.TaskGroup() as tg:
        attack.port = server.port
        for i in range(LIMIT):
            tg.create_task(attack.client(f"127.0.0.{2 + i % ATTACKERS}"), name=f"trickler-{i}")
        try:
            for newcomer in range(6):  # each while the limit is full of tricklers
                if newcomer == 3:  # the rest once the tricklers are cut off and come back
                    await async_wait_until(lambda: server.stats.frame_timeouts >= LIMIT // 2,
                                           timeout=30, what="tricklers cut off at 5 s")
                await async_wait_until(lambda: server.stats.connections == LIMIT, timeout=30,
                                       what="the connection limit full of tricklers")
                _, pdu = await served(server.port, grid, bound_s=10)
                assert pdu == b"\x04\x04" + expected
            assert server.stats.evicted >= 6  # room was made by dropping tricklers
            assert attack.connects > LIMIT + LIMIT // 2  # they came back, again and again
        finally:
            stop.set()
    assert server.stats.connections == 0


@pytest.mark.parametrize("sending", ["half_a_frame", "a_byte_every_0.2_s"])
async def test_a_frame_not_completed_in_time_closes_the_connection_however_its_bytes_trickle(
        tmp_path: Path, sending: str) -> None:
    images, _ = online_output(tmp_path)
    async with serving(ModbusServer("127.0.0.1", 0, images.image, frame_timeout_s=1.0)) as server:
        reader, writer = await connect(server.port)
        frame = read_request(9)
        if sending == "half_a_frame":
            writer.write(frame[:6])
            assert await closed_by_server(reader)
        else:
            for byte in frame[:-1]:  # eleven of twelve bytes: 2.2 s, over the 1 s deadline
                writer.write(bytes([byte]))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                if await closed_by_server(reader, 0.2):
                    break
            else:
                pytest.fail("the connection outlived its frame deadline")
        writer.close()
        assert server.stats.frame_timeouts == 1
        await async_wait_until(lambda: server.stats.connections == 0, what="the slot freed")


async def test_frames_completed_within_the_deadline_are_answered_split_or_pipelined(
        tmp_path: Path) -> None:
    images, _ = online_output(tmp_path)
    async with serving(ModbusServer("127.0.0.1", 0, images.image, frame_timeout_s=3.0)) as server:
        reader, writer = await connect(server.port)
        first, second = read_request(1), read_request(2)
        writer.write(first[:5])  # a frame in two pieces
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(first[5:] + second[:3])  # ... and the next frame begun behind it
        assert (await read_answer(reader))[0] == 1
        await asyncio.sleep(0.3)
        writer.write(second[3:])
        assert (await read_answer(reader))[0] == 2
        for tid in range(3, 8):  # an idle, well-behaved connection is never timed out
            writer.write(read_request(tid))
            assert (await read_answer(reader))[0] == tid
        writer.close()
        assert server.stats.frame_timeouts == 0


async def test_one_address_holds_at_most_its_share_of_the_connections(tmp_path: Path) -> None:
    images, _ = online_output(tmp_path)
    async with serving(ModbusServer("127.0.0.1", 0, images.image, per_address=3)) as server:
        held = [await connect(server.port, "127.0.0.2") for _ in range(3)]
        await async_wait_until(lambda: server.stats.connections == 3, what="three connections")
        reader, writer = await connect(server.port, "127.0.0.2")
        assert await closed_by_server(reader)  # the fourth from that address
        writer.close()
        assert server.stats.refused_per_address == 1
        other_reader, other_writer = await connect(server.port, "127.0.0.3")
        other_writer.write(read_request(4))
        assert (await read_answer(other_reader))[0] == 4  # other addresses are not held up
        held[0][1].close()
        await async_wait_until(lambda: server.stats.connections == 3, what="one released")
        again_reader, again_writer = await connect(server.port, "127.0.0.2")
        again_writer.write(read_request(5))
        assert (await read_answer(again_reader))[0] == 5  # a freed share can be used again
        for _, w in (*held[1:], (other_reader, other_writer), (again_reader, again_writer)):
            w.close()
        assert server.stats.refused == 0


async def test_connections_from_outside_allow_from_are_closed_at_once(tmp_path: Path) -> None:
    config = ModbusConfig(host="127.0.0.1", port=0, allow_from=("127.0.0.2/32", "10.0.0.0/8"))
    output, _ = online_output(tmp_path, config)
    await output.start()
    try:
        outsider_reader, outsider_writer = await connect(output.port, "127.0.0.3")
        outsider_writer.write(read_request(1))
        assert await closed_by_server(outsider_reader)
        outsider_writer.close()
        assert output.stats.denied == 1
        reader, writer = await connect(output.port, "127.0.0.2")
        writer.write(read_request(2))
        assert (await read_answer(reader))[0] == 2
        writer.close()
        assert output.stats.requests == 1  # the outsider's request was never read
    finally:
        await output.close()


async def test_events_clients_trigger_at_will_are_logged_once_per_interval_with_the_count(
        tmp_path: Path) -> None:
    images, _ = online_output(tmp_path)
    server = ModbusServer("127.0.0.1", 0, images.image, per_address=2, log_interval_s=3600)
    with structlog.testing.capture_logs() as logs:
        async with serving(server):
            for tid in range(50):  # protocol id 7: closed, one event each
                reader, writer = await connect(server.port)
                writer.write(mbap(tid, 6, protocol=7) + b"\x04\x00\x00\x00\x01")
                assert await closed_by_server(reader)
                writer.close()
            held = [await connect(server.port, "127.0.0.2") for _ in range(2)]
            for _ in range(30):
                reader, writer = await connect(server.port, "127.0.0.2")
                assert await closed_by_server(reader)
                writer.close()
            for _, w in held:
                w.close()
            assert server.stats.frames_invalid == 50
            assert server.stats.refused_per_address == 30
            during = [e for e in logs if e["event"].startswith("modbus_frame_invalid")]
            assert [e["count"] for e in during] == [1]  # the first at once, the rest counted
    invalid = [e["count"] for e in logs if e["event"] == "modbus_frame_invalid"]
    refused = [e["count"] for e in logs if e["event"] == "modbus_connection_refused_per_address"]
    assert invalid == [1, 49]  # the rest with the count, when the server closes
    assert refused == [1, 29]


async def test_a_running_gateway_counts_what_it_cut_off_in_metrics(
        sim_server: SimServer, sim_meter: SimMeter, broker: Broker, topic_prefix: str,
        tmp_path: Path) -> None:
    base = gateway_config(broker, topic_prefix, tmp_path / "state",
                          [("main", sim_server.url_for(sim_meter))])
    config = replace(
        base, http=HttpConfig(host="127.0.0.1", port=0),
        modbus=ModbusConfig(host="127.0.0.1", port=0, allow_from=("127.0.0.1/32",),
                            frame_timeout_s=1.0, max_connections_per_address=2))
    config = replace(config, meters=tuple(replace(m, password=Secret(SIM_PASSWORD))
                                          for m in config.meters))
    async with running_app(config) as app:
        modbus, http = app.modbus, app.http
        assert modbus is not None
        assert http is not None
        await async_wait_until(lambda: modbus.listening and http.port != 0,
                               what="Modbus and HTTP listening")
        port = modbus.port
        reader, writer = await connect(port, "127.0.0.9")  # outside allow_from
        assert await closed_by_server(reader)
        writer.close()
        reader, writer = await connect(port)
        writer.write(mbap(1, 0) + b"\x04")  # an impossible length
        assert await closed_by_server(reader)
        writer.close()
        reader, writer = await connect(port)
        writer.write(read_request(2)[:4])  # never completed
        assert await closed_by_server(reader)
        writer.close()
        held = [await connect(port) for _ in range(2)]
        await async_wait_until(lambda: modbus.stats.connections == 2, what="two held")
        reader, writer = await connect(port)  # a third from the same address
        assert await closed_by_server(reader)
        writer.close()
        for _, w in held:
            w.close()
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{http.url}/metrics")).text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["egauge_modbus_connections_denied_total"] == 1
    assert samples["egauge_modbus_frames_invalid_total"] == 1
    assert samples["egauge_modbus_frame_timeouts_total"] == 1
    assert samples["egauge_modbus_connections_refused_per_address_total"] == 1
    assert samples["egauge_modbus_connections_refused_total"] == 0
