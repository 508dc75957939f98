"""The upgrade from a release without slug pins moves nothing.

The state directory is as the previous release left it: Modbus pins in the version 1 format
(``modbus/<meter>.json``, ``"slots"``), the retained-topic ledger, no slug pins. The meter has
names that collide. The expectations come from the previous release's documented rules --
slugs: "when two names of a meter collide, the one closest to the slug keeps it (exact match,
lower-case match, then the name that sorts first) and the others get ``_<6 hex digits of its
SHA-1>``"; unique_ids ``egauge_<serial>_<slug>`` (``-energy`` for energy sensors); Modbus
slot k at ``100 + 6k`` -- and are written out here, not computed by the gateway's code."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import ModbusConfig
from gateway.simulator import SimMeter, ThreadedSimServer, Wave, physical
from tests.support.broker import Broker, free_port
from tests.support.modbus import f32, rate_and_ts
from tests.support.mqtt import Received, gateway_config, running_app, subscriber
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

SERIAL = "SIM0801"


def sha6(name: str) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:6]


# what the previous release published for these names
OLD_SLUGS = {
    "Grid": f"grid_{sha6('Grid')}",  # "grid" matches its slug exactly and keeps it
    "grid": "grid",
    "Panel A/B": f"panel_a_b_{sha6('Panel A/B')}",  # "Panel A-B" sorts first
    "Panel A-B": "panel_a_b",
    "Solar+": "solar_plus",
}
# the Modbus slots it had pinned: first seen Grid, Panel A/B, Solar+, Gone; later the others
OLD_SLOTS = {"Grid": 0, "Panel A/B": 1, "Solar+": 2, "Gone": 3, "grid": 4, "Panel A-B": 5}


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    names = ["Grid", "Panel A/B", "grid", "Panel A-B", "Solar+"]
    registers = [physical(n, "P", i, i, Wave(100.0 * (i + 1), 40.0 + i, 300.0 + 17 * i))
                 for i, n in enumerate(names)]
    meter = SimMeter(SERIAL, registers=registers)
    with ThreadedSimServer([meter]) as server:
        yield meter, server.url_for(meter)


def previous_state(state: Path, prefix: str) -> set[str]:
    """The files the previous release left; returns the retained topics its ledger lists."""
    (state / "modbus").mkdir(parents=True)
    slots = ",\n".join(f'  {json.dumps(n)}: {{"slot": {k}, "type": "P"}}'
                       for n, k in OLD_SLOTS.items())
    (state / "modbus" / "main.json").write_text(
        f'{{"version": 1, "meter": "main", "slots": {{\n{slots}\n}}}}\n')
    node = f"egauge_{SERIAL}"
    topics = {f"{prefix}/main/availability", f"{prefix}/main/device", f"{prefix}/main/state"}
    for s in OLD_SLUGS.values():
        topics |= {f"{prefix}/main/register/{s}", f"{prefix}-ha/sensor/{node}/{s}/config",
                   f"{prefix}-ha/sensor/{node}/{s}-energy/config"}
    (state / "mqtt-retained.json").write_text(json.dumps(
        {"version": 1, "meters": {"main": {"topics": sorted(topics), "net": []}}}))
    return topics


async def test_after_the_upgrade_every_topic_unique_id_and_address_is_the_old_one(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    meter, url = sim
    p, state = topic_prefix, tmp_path / "state"
    old_topics = previous_state(state, p)
    old_modbus_file = (state / "modbus" / "main.json").read_text()
    port = free_port()
    config = dataclasses.replace(gateway_config(broker, p, state, [("main", url)]),
                                 modbus=ModbusConfig(host="127.0.0.1", port=port))
    node = f"egauge_{SERIAL}"
    expected_ids = {f"{node}_{s}" for s in OLD_SLUGS.values()} | {
        f"{node}_{s}-energy" for s in OLD_SLUGS.values()}
    for run in range(2):  # the upgrade, then one more restart
        with subscriber(broker, f"{p}/#") as sub, subscriber(broker, f"{p}-ha/#") as ha:
            async with running_app(config):
                def every_register(m: Received) -> bool:
                    return len(m.json()["registers"]) == len(OLD_SLUGS)

                state_msg = await sub.await_for(f"{p}/main/state", every_register)
                registers = state_msg.json()["registers"]
                assert {v["name"]: s for s, v in registers.items()} == OLD_SLUGS, run
                for s in OLD_SLUGS.values():
                    await sub.await_for(f"{p}/main/register/{s}")
                configs = {}
                for s in OLD_SLUGS.values():
                    for obj in (s, f"{s}-energy"):
                        cfg = (await ha.await_for(f"{p}-ha/sensor/{node}/{obj}/config")).json()
                        configs[cfg["unique_id"]] = cfg
                assert set(configs) == expected_ids
                await check_modbus(meter, port)
            cleared = [m.topic for m in sub.messages + ha.messages if m.payload == b""
                       and m.topic in old_topics]
            assert cleared == [], run  # nothing the previous release published went away
    slug_pins = json.loads((state / "slugs" / "main.json").read_text())["pins"]
    assert {n: e["slug"] for n, e in slug_pins.items()} == OLD_SLUGS
    # every name keeps its Modbus slot; what is new are the slots of the energy counters of
    # the registers that run both ways, after all of the old ones
    pins = json.loads((state / "modbus" / "main.json").read_text())["pins"]
    assert {n: e["slot"] for n, e in pins.items() if n in OLD_SLOTS} == OLD_SLOTS
    new = {n: e for n, e in pins.items() if n not in OLD_SLOTS}
    assert set(new) == {f"{n} {role}" for n in ("Grid", "grid", "Panel A/B", "Panel A-B")
                        for role in ("import", "export")}
    assert min(e["slot"] for e in new.values()) > max(OLD_SLOTS.values())
    assert json.loads(old_modbus_file)["slots"].keys() <= pins.keys()


async def check_modbus(meter: SimMeter, port: int) -> None:
    """Every name at the address of its old slot (the removed one reads NaN)."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert await client.connect()
    try:
        for name, slot in OLD_SLOTS.items():
            address = 100 + 6 * slot

            async def matches(name: str = name, address: int = address) -> bool:
                got = await rate_and_ts(client, 1, address)
                if got is None:
                    return False
                value, ts = got
                if name == "Gone":
                    return math.isnan(value)
                return value == f32(meter.rate(name, ts))

            await async_wait_until(matches, what=f"{name} at {address}")
    finally:
        client.close()
