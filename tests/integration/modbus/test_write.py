"""Modbus writes end to end: pymodbus (or raw MBAP frames) -> the gateway's Modbus server ->
the command router -> the real WebApiClient -> the simulator over HTTP, all inside a running App
without MQTT.

Expected meter calls come from docs/COMMANDS.md (a relay request is ``GET /ctrl/device``, then
``POST /ctrl/call`` with the 0-based relay number) and the simulator's own device list; the
exception codes from docs/MODBUS.md ("Writes").
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from pymodbus.client import AsyncModbusTcpClient

from gateway.commands import CommandRequest
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
from tests.support.broker import require_binary
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

UNIT = 3
COMMAND = 90  # the default map's command register; coils 0-2 are relays 1-3


def frame(tid: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, UNIT) + pdu


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readexactly(7), 10)
    tid, _, length, _ = struct.unpack(">HHHB", head)
    return tid, await asyncio.wait_for(reader.readexactly(length - 1), 10)


def ctrl_posts(meter: SimMeter) -> list[Any]:
    """The bodies of the /ctrl/call requests the meter received."""
    return [r.body for r in meter.calls_to("/api/ctrl/call", "POST")]


def relay_call(meter: SimMeter, method: str, args: list[int]) -> dict[str, Any]:
    device = meter.controller.devices()[0]
    attrs = {"mfg": device["mfg"], "model": device["model"], "sn": device["sn"]}
    return {"attrs": attrs, "method": method, "args": args}


class Gateway:
    """A running App for the simulated meter, and a pymodbus client of its Modbus server."""

    def __init__(self, app: App, client: AsyncModbusTcpClient, meter: SimMeter) -> None:
        self.app = app
        self.client = client
        self.meter = meter

    @property
    def port(self) -> int:
        assert self.app.modbus is not None
        return self.app.modbus.port

    async def online(self) -> bool:
        rr = await self.client.read_input_registers(0, count=1, device_id=UNIT)
        return not rr.isError() and rr.registers == [1]


Start = Callable[..., Any]


@pytest.fixture
async def gateway(tmp_path: Path, sim_meter: SimMeter, sim_server: SimServer
                  ) -> AsyncIterator[Start]:
    """``async with gateway(allow, writes=True, mapping="default") as gw``."""

    @asynccontextmanager
    async def start(allow: Sequence[str], *, writes: bool = True, mapping: str = "default",
                    cooldown_s: float = 300.0) -> AsyncIterator[Gateway]:
        meter = MeterConfig(
            id="main", url=sim_server.url_for(sim_meter), username=SIM_USERNAME,
            password=Secret(SIM_PASSWORD), poll_interval_s=0.3, timeout_s=2.0,
            offline_after=2, modbus_unit_id=UNIT, modbus_mapping=mapping,
            commands=CommandPolicy(allow=tuple(allow), reboot_cooldown_s=cooldown_s,
                                   timeout_s=5.0))
        config = Config(GatewaySection(id="t", state_dir=str(tmp_path / "state"),
                                       shutdown_timeout_s=5.0),
                        (meter,), MqttConfig(enabled=False),
                        ModbusConfig(host="127.0.0.1", port=0, writes=writes),
                        HttpConfig(enabled=False))
        app = App(config)
        task = asyncio.create_task(app.run(), name="app")
        client: AsyncModbusTcpClient | None = None
        try:
            await async_wait_until(lambda: task.done() or (
                app.modbus is not None and app.modbus.port != 0), what="modbus listening")
            assert not task.done(), task.result()
            assert app.modbus is not None
            client = AsyncModbusTcpClient("127.0.0.1", port=app.modbus.port, timeout=10,
                                          retries=0)
            assert await client.connect()
            gw = Gateway(app, client, sim_meter)
            await async_wait_until(gw.online, what="meter online")
            yield gw
        finally:
            if client is not None:
                client.close()
            app.request_stop()
            assert await asyncio.wait_for(task, 15) == 0

    yield start
    sim_meter.faults.clear()


def commands(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "command"]


# -- coils -------------------------------------------------------------------------------------


async def test_coil_write_switches_relay_1_when_enabled_and_allowed(
        gateway: Start, sim_meter: SimMeter) -> None:
    with structlog.testing.capture_logs() as logs:
        async with gateway(["relay"]) as gw:
            before = await gw.client.read_coils(0, count=3, device_id=UNIT)
            assert before.bits[:3] == [False, False, False]  # nothing known yet: 0
            wc = await gw.client.write_coil(0, True, device_id=UNIT)
            assert not wc.isError(), wc
            assert (wc.address, wc.bits[0]) == (0, True)  # FC05 echoes the request
            assert sim_meter.relays == (True, False, False)
            assert ctrl_posts(sim_meter) == [relay_call(sim_meter, "relay.close", [0])]
            after = await gw.client.read_coils(0, count=3, device_id=UNIT)
            assert after.bits[:3] == [True, False, False]
            local = gw.client.ctx.transport.get_extra_info("sockname")
    [event] = commands(logs)
    assert event["source"] == "modbus"
    assert event["client"] == f"{local[0]}:{local[1]}"  # the peer address of the Modbus client
    assert (event["meter"], event["action"], event["outcome"]) == ("main", "relay", "ok")
    assert event["request"] == {"relay": 1, "state": "closed"}


async def test_coils_written_together_switch_each_relay(gateway: Start,
                                                        sim_meter: SimMeter) -> None:
    async with gateway(["relay"]) as gw:
        wc = await gw.client.write_coils(0, [True, False, True], device_id=UNIT)
        assert not wc.isError(), wc
        assert (wc.address, wc.count) == (0, 3)
        assert sim_meter.relays == (True, False, True)
        assert ctrl_posts(sim_meter) == [relay_call(sim_meter, "relay.close", [0]),
                                         relay_call(sim_meter, "relay.open", [1]),
                                         relay_call(sim_meter, "relay.close", [2])]
        rc = await gw.client.read_coils(0, count=3, device_id=UNIT)
        assert rc.bits[:3] == [True, False, True]
        off = await gw.client.write_coil(2, False, device_id=UNIT)
        assert not off.isError(), off
        assert sim_meter.relays == (True, False, False)


async def test_coils_follow_relay_requests_of_other_sources(gateway: Start,
                                                            sim_meter: SimMeter) -> None:
    async with gateway(["relay"]) as gw:
        router = gw.app.router
        assert router is not None
        closed = await router.handle(CommandRequest(
            "main", "relay", b'{"mask": 5, "state": "closed"}', source="mqtt"))
        assert closed is not None
        assert closed.ok, closed
        rc = await gw.client.read_coils(0, count=3, device_id=UNIT)
        assert rc.bits[:3] == list(sim_meter.relays) == [True, False, True]
        planned = await router.handle(CommandRequest(
            "main", "relay", b'{"relay": 1, "state": "open", "dry_run": true}', source="mqtt"))
        assert planned is not None
        assert planned.ok, planned
        rc = await gw.client.read_coils(0, count=3, device_id=UNIT)
        assert rc.bits[:3] == [True, False, True]  # a dry run switched nothing


async def test_writes_disabled_refuse_with_illegal_function(gateway: Start,
                                                            sim_meter: SimMeter) -> None:
    with structlog.testing.capture_logs() as logs:
        async with gateway(["relay", "reboot"], writes=False) as gw:
            wc = await gw.client.write_coil(0, True, device_id=UNIT)
            assert (wc.function_code, wc.exception_code) == (0x85, 0x01)
            wr = await gw.client.write_register(COMMAND, 1, device_id=UNIT)
            assert (wr.function_code, wr.exception_code) == (0x86, 0x01)
            rc = await gw.client.read_coils(0, count=3, device_id=UNIT)
            assert (rc.function_code, rc.exception_code) == (0x81, 0x01)
    assert ctrl_posts(sim_meter) == []
    assert sim_meter.relays == (False, False, False)
    assert sim_meter.calls_to("/api/cmd/reboot") == []
    assert commands(logs) == []  # nothing reached the router


async def test_relay_not_allowed_refuses_with_illegal_function(gateway: Start,
                                                               sim_meter: SimMeter) -> None:
    with structlog.testing.capture_logs() as logs:
        async with gateway(["reboot"]) as gw:
            wc = await gw.client.write_coil(1, True, device_id=UNIT)
            assert (wc.function_code, wc.exception_code) == (0x85, 0x01)
    assert ctrl_posts(sim_meter) == []
    assert sim_meter.calls_to("/api/ctrl/device") == []
    assert sim_meter.relays == (False, False, False)
    [event] = commands(logs)
    assert (event["source"], event["outcome"], event["action"]) == ("modbus", "not_allowed",
                                                                    "relay")


async def test_bad_values_and_addresses(gateway: Start, sim_meter: SimMeter) -> None:
    async with gateway(["relay", "reboot"]) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        try:
            cases = [
                (struct.pack(">BHH", 5, 0, 0x1234), bytes((0x85, 0x03))),  # neither ON nor OFF
                (struct.pack(">BHH", 5, 3, 0xFF00), bytes((0x85, 0x02))),  # no coil 3
                (struct.pack(">BHHB", 15, 0, 3, 2) + b"\x07\x00", bytes((0x8F, 0x03))),  # bytes
                (struct.pack(">BHHB", 15, 2, 2, 1) + b"\x03", bytes((0x8F, 0x02))),  # 2-3
                (struct.pack(">BHH", 1, 0, 0), bytes((0x81, 0x03))),  # count 0
                (struct.pack(">BHH", 1, 1, 3), bytes((0x81, 0x02))),  # coils 1-3
                (struct.pack(">BHH", 6, COMMAND + 1, 1), bytes((0x86, 0x02))),
                (struct.pack(">BHH", 6, COMMAND, 2), bytes((0x86, 0x03))),  # no code 2
                (struct.pack(">BHHBHH", 16, COMMAND, 2, 4, 1, 0), bytes((0x90, 0x02))),
                (struct.pack(">BHHBH", 16, COMMAND, 1, 3, 1), bytes((0x90, 0x03))),  # count 1
                (struct.pack(">BHH", 6, COMMAND, 0), struct.pack(">BHH", 6, COMMAND, 0)),  # no-op
                (bytes((5, 0, 0)), bytes((0x85, 0x03))),  # truncated
                (struct.pack(">BHH", 2, 0, 1), bytes((0x82, 0x01))),  # discrete inputs: none
            ]
            for tid, (request, _) in enumerate(cases):
                writer.write(frame(tid, request))
            answers = [await read_frame(reader) for _ in cases]
        finally:
            writer.close()
    assert answers == [(tid, answer) for tid, (_, answer) in enumerate(cases)]
    assert ctrl_posts(sim_meter) == []
    assert sim_meter.calls_to("/api/cmd/reboot") == []


async def test_offline_meter_answers_target_failed(gateway: Start, sim_meter: SimMeter) -> None:
    with structlog.testing.capture_logs() as logs:
        async with gateway(["relay"]) as gw:
            sim_meter.go_down(60)
            await async_wait_until(lambda: not gw.app.is_online("main"), what="meter offline")
            wc = await gw.client.write_coil(0, True, device_id=UNIT)
            assert (wc.function_code, wc.exception_code) == (0x85, 0x0B)
            rc = await gw.client.read_coils(0, count=1, device_id=UNIT)
            assert (rc.function_code, rc.exception_code) == (0x81, 0x0B)
            sim_meter.go_down(0)
    assert ctrl_posts(sim_meter) == []
    assert [(e["source"], e["outcome"]) for e in commands(logs)] == [("modbus", "offline")]


async def test_mbpoll_closes_and_opens_a_relay(gateway: Start, sim_meter: SimMeter) -> None:
    async def mbpoll(port: int, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            require_binary("mbpoll"), "-m", "tcp", "-a", str(UNIT), "-1", "-o", "10",
            "-p", str(port), *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async with gateway(["relay"]) as gw:
        # mbpoll's references count from 1: reference 2 is coil 1, relay 2
        code, out = await mbpoll(gw.port, "-t", "0", "-r", "2", "127.0.0.1", "1")
        assert code == 0, out
        assert sim_meter.relays == (False, True, False)
        code, out = await mbpoll(gw.port, "-t", "0", "-r", "2", "127.0.0.1", "0")
        assert code == 0, out
        assert sim_meter.relays == (False, False, False)
    assert [body["method"] for body in ctrl_posts(sim_meter)] == ["relay.close", "relay.open"]


# -- the command register ----------------------------------------------------------------------


async def test_command_code_reboots_then_cooldown_answers_busy(gateway: Start,
                                                               sim_meter: SimMeter) -> None:
    sim_meter.reboot_downtime_s = 0.2
    async with gateway(["reboot"]) as gw:
        wr = await gw.client.write_register(COMMAND, 1, device_id=UNIT)
        assert not wr.isError(), wr
        assert (wr.address, wr.registers) == (COMMAND, [1])
        assert sim_meter.boot_reason == "software reset"
        again = await gw.client.write_registers(COMMAND, [1], device_id=UNIT)
        assert (again.function_code, again.exception_code) == (0x90, 0x06)  # cool-down
    assert len(sim_meter.calls_to("/api/cmd/reboot", "POST")) == 1


async def test_meter_error_answers_server_device_failure(gateway: Start, sim_meter: SimMeter,
                                                         tmp_path: Path) -> None:
    mapping = tmp_path / "writes.yaml"
    mapping.write_text("extends: default\ncommand:\n  address: 90\n  codes:\n"
                       "    5: {action: cmd, name: clear, body: everything}\n")
    async with gateway(["cmd:clear"], mapping=str(mapping)) as gw:
        wr = await gw.client.write_register(COMMAND, 5, device_id=UNIT)
        assert (wr.function_code, wr.exception_code) == (0x86, 0x04)
    # the meter got the request and refused its argument (the simulator accepts only
    # "excess" and "web_cache")
    assert [r.body for r in sim_meter.calls_to("/api/cmd/clear", "POST")] == ["everything"]


# -- the server keeps answering -----------------------------------------------------------------


async def test_a_slow_write_holds_up_neither_other_clients_nor_the_order(
        gateway: Start, sim_meter: SimMeter) -> None:
    async with gateway(["relay"]) as gw:
        sim_meter.faults.latency_s = 0.4  # each meter answer: lookup, call, result
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        try:
            # a write and a read pipelined on one connection: answered in that order
            writer.write(frame(1, struct.pack(">BHH", 5, 0, 0xFF00))
                         + frame(2, struct.pack(">BHH", 4, 0, 1)))
            first = asyncio.create_task(read_frame(reader), name="first-answer")
            await async_wait_until(lambda: sim_meter.calls_to("/api/ctrl/device"),
                                   what="the write reached the meter")
            rr = await gw.client.read_input_registers(0, count=1, device_id=UNIT)
            assert rr.registers == [1]  # another connection is answered meanwhile
            assert not first.done()
            assert await first == (1, struct.pack(">BHH", 5, 0, 0xFF00))
            assert await read_frame(reader) == (2, bytes((4, 2, 0, 1)))
        finally:
            writer.close()
    assert sim_meter.relays == (True, False, False)
