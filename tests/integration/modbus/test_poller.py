"""End to end: simulator over HTTP -> WebApiClient -> Poller -> Hub -> ModbusOutput -> pymodbus.

The meter goes down and comes back; the unit's status block and its 0x0B answers follow.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from gateway.config import MeterConfig, ModbusConfig
from gateway.core import Hub, Poller
from gateway.meter import WebApiClient
from gateway.modbus import ModbusOutput
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME
from tests.support.waiting import async_wait_until


def f32(value: float) -> float:
    rounded: float = struct.unpack(">f", struct.pack(">f", value))[0]
    return rounded


async def test_status_and_values_follow_the_meter(tmp_path: Path, sim_meter: SimMeter,
                                                  sim_server: SimServer) -> None:
    cfg = MeterConfig(id="main", url=sim_server.url_for(sim_meter), username=SIM_USERNAME,
                      password=Secret(SIM_PASSWORD), poll_interval_s=0.2, timeout_s=0.15,
                      offline_after=2, modbus_unit_id=4)
    hub = Hub([cfg.id])
    output = ModbusOutput(ModbusConfig(host="127.0.0.1", port=0), [cfg], tmp_path)
    hub.add_sink(output)
    await output.start()
    names = [r.name for r in sorted(sim_meter.registers, key=lambda r: r.idx)]
    grid = 100 + 6 * names.index("Grid")  # the default map's pinning rule
    client = AsyncModbusTcpClient("127.0.0.1", port=output.port, timeout=3, retries=0)
    try:
        assert await client.connect()
        async with WebApiClient.from_config(cfg) as meter_client, asyncio.TaskGroup() as tg:
            poller = tg.create_task(Poller(cfg, meter_client, hub, asyncio.Lock()).run(),
                                    name="poller-main")

            async def status() -> tuple[int, int]:
                rr = await client.read_input_registers(0, count=8, device_id=4)
                online, _, ts, _, _ = struct.unpack(
                    ">HHIII", b"".join(struct.pack(">H", r) for r in rr.registers))
                return online, ts

            async def grid_matches_the_meter() -> bool:
                online, ts = await status()
                rr = await client.read_input_registers(grid, count=2, device_id=4)
                if not online or rr.isError():
                    return False
                value = client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32)
                # the simulator's values are those of the whole second of its timestamp
                return bool(value == f32(sim_meter.rate("Grid", ts)) and (await status())[1] == ts)

            async def grid_exception() -> int | None:
                rr = await client.read_input_registers(grid, count=2, device_id=4)
                return rr.exception_code if rr.isError() else None

            await async_wait_until(grid_matches_the_meter, what="Grid over Modbus")
            sim_meter.go_down(3.0)
            async def offline() -> bool:
                return (await status())[0] == 0

            await async_wait_until(offline, what="online = 0 in the status block")
            assert await grid_exception() == 0x0B
            await async_wait_until(grid_matches_the_meter, timeout=20, what="back online")
            poller.cancel()
    finally:
        client.close()
        await output.close()
