"""The counters over Modbus, read with pymodbus from the running gateway: SunSpec model 213's
TotWhImp and TotWhExp (float32 Wh) and the default map's counter slots (float64 kWh) carry
exactly the counters the gateway publishes with the same reading."""

from __future__ import annotations

import dataclasses
import itertools
import struct
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import ModbusConfig
from gateway.model import EnergyCount
from gateway.runtime import App
from gateway.simulator import SimServer
from tests.support.broker import Broker, free_port
from tests.support.energy import SWING, swinging_meter
from tests.support.modbus import f32
from tests.support.mqtt import gateway_config, running_app
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

M213 = 40000 + 2 + 68 + 2  # the first point of model 213
TOT_WH_EXP, TOT_WH_IMP = M213 + 58, M213 + 66  # SunSpec's offsets of TotWhExp, TotWhImp
SUNSPEC_MAP = "extends: sunspec\ninputs: {energy_import: Swing, energy_export: Swing}\n"


def counters(app: App, name: str) -> EnergyCount | None:
    """The counters of ``name`` in the reading the outputs got last."""
    reading = app.hub.meter("main").reading
    value = reading.by_name().get(name) if reading is not None else None
    return value.energy if value is not None else None


async def words(client: AsyncModbusTcpClient, address: int, count: int) -> bytes | None:
    rr = await client.read_holding_registers(address, count=count, device_id=1)
    return None if rr.isError() else b"".join(struct.pack(">H", r) for r in rr.registers)


async def test_sunspec_totwhimp_and_totwhexp_are_the_counters(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    meter = swinging_meter("SIM1420")
    mapping = tmp_path / "sunspec-swing.yaml"
    mapping.write_text(SUNSPEC_MAP)
    port = free_port()
    async with SimServer([meter]) as server:
        config = gateway_config(broker, topic_prefix, tmp_path / "state",
                                [("main", server.url_for(meter))], poll_interval_s=0.5)
        config = dataclasses.replace(
            config, modbus=ModbusConfig(host="127.0.0.1", port=port),
            meters=tuple(dataclasses.replace(m, modbus_mapping=str(mapping))
                         for m in config.meters))
        async with running_app(config) as app:
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
            assert await client.connect()
            seen: list[tuple[float, float]] = []
            try:
                async def matches() -> bool:
                    before = counters(app, SWING)
                    imp, exp = await words(client, TOT_WH_IMP, 2), await words(client,
                                                                               TOT_WH_EXP, 2)
                    after = counters(app, SWING)
                    if before is None or before != after or imp is None or exp is None:
                        return False  # a poll came in between: read again
                    got = (struct.unpack(">f", imp)[0], struct.unpack(">f", exp)[0])
                    seen.append(got)
                    return got == (f32(before.imported / 3600), f32(before.exported / 3600)) \
                        and before.imported > 0 and before.exported > 0

                await async_wait_until(matches, timeout=30,
                                       what="TotWhImp and TotWhExp equal to the counters")
            finally:
                client.close()
    assert all(a <= b for a, b in itertools.pairwise(seen))  # they only grow


async def test_the_default_map_pins_a_slot_to_each_counter(
        broker: Broker, tmp_path: Path, topic_prefix: str) -> None:
    meter = swinging_meter("SIM1421")
    port = free_port()
    async with SimServer([meter]) as server:
        config = gateway_config(broker, topic_prefix, tmp_path / "state",
                                [("main", server.url_for(meter))], poll_interval_s=0.5)
        config = dataclasses.replace(config, modbus=ModbusConfig(host="127.0.0.1", port=port))
        async with running_app(config) as app:
            assert app.modbus is not None
            await async_wait_until(lambda: counters(app, SWING) is not None,
                                   what="counters of Swing")
            layout = {(p.name, p.source): p.address for p in app.modbus.layout("main").points}
            names = [r.name for r in meter.registers]
            # every register first (Swing was added last), then the counters' slots
            assert layout[(SWING, "rate")] == 100 + 6 * names.index(SWING)
            slot = layout[(f"{SWING} import", "import")]
            assert slot > layout[(SWING, "cumulative")]
            assert layout[(f"{SWING} export", "export")] == slot + 6
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
            assert await client.connect()
            try:
                async def matches() -> bool:
                    before = counters(app, SWING)
                    imp = await client.read_input_registers(slot, count=4, device_id=1)
                    exp = await client.read_input_registers(slot + 6, count=4, device_id=1)
                    if before is None or before != counters(app, SWING) or imp.isError() \
                            or exp.isError():
                        return False
                    kwh = [client.convert_from_registers(r.registers, client.DATATYPE.FLOAT64)
                           for r in (imp, exp)]
                    return kwh == [before.import_value, before.export_value] and kwh[1] > 0

                await async_wait_until(matches, timeout=30, what="the counter slots")
            finally:
                client.close()
