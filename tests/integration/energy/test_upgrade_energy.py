"""The upgrade to the energy counters moves nothing.

The state directory is as the release before them left it: slug pins (no entity pins), Modbus
pins (version 2), the retained-topic ledger. The meter has registers whose names are what
the new entities would want -- ``Grid import`` (the entity id ``sensor.main_grid_import``
that Grid's import counter would take) and ``Data age`` (that of the data age diagnostic).
Every topic, unique_id, entity id and Modbus address of the registers stays; the new
entities and slots go around them, by the documented rules (written out here): a wanted slug
that is taken gets ``_<first 6 hex digits of the SHA-1 of its pin key>``; a counter whose
slot name is a register's gets no slot."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import ModbusConfig
from gateway.simulator import SimMeter, ThreadedSimServer, Wave, physical
from tests.support.broker import Broker, free_port
from tests.support.modbus import f32, rate_and_ts
from tests.support.mqtt import gateway_config, running_app, subscriber
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

SERIAL = "SIM1430"
NODE = f"egauge_{SERIAL}"
SLUGS = {"Grid": "grid", "Grid import": "grid_import", "Solar+": "solar_plus",
         "Data age": "data_age"}
SLOTS = {"Grid": 0, "Grid import": 1, "Solar+": 2, "Data age": 3}
CODES = {"Grid": "P", "Grid import": "P", "Solar+": "P", "Data age": "T"}


def sha6(key: str) -> str:
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:6]


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    registers = [physical(n, CODES[n], i, i, Wave(300.0 * (i + 1) - 400.0, 500.0, 40.0 + i))
                 for i, n in enumerate(SLUGS)]
    meter = SimMeter(SERIAL, registers=registers)
    with ThreadedSimServer([meter]) as server:
        yield meter, server.url_for(meter)


def previous_state(state: Path, prefix: str) -> set[str]:
    """The files the previous release left; the retained topics its ledger lists."""
    rows = ",\n".join(f'  {json.dumps(n)}: {{"slug": "{s}", "type": "{CODES[n]}", "idx": {i}, '
                      f'"did": {i}, "present": true}}' for i, (n, s) in enumerate(SLUGS.items()))
    (state / "slugs").mkdir(parents=True)
    (state / "slugs" / "main.json").write_text(
        f'{{"version": 2, "kind": "slugs", "meter": "main", "meta": {{"serial": "{SERIAL}"}}, '
        f'"pins": {{\n{rows}\n}}}}\n')
    slots = ",\n".join(f'  {json.dumps(n)}: {{"slot": {k}, "type": "{CODES[n]}"}}'
                       for n, k in SLOTS.items())
    (state / "modbus").mkdir()
    (state / "modbus" / "main.json").write_text(
        '{"version": 2, "kind": "modbus", "meter": "main", "meta": {}, "pins": {\n'
        f'{slots}\n}}}}\n')
    topics = {f"{prefix}/main/availability", f"{prefix}/main/device", f"{prefix}/main/state"}
    for name, s in SLUGS.items():
        topics |= {f"{prefix}/main/register/{s}", f"{prefix}-ha/sensor/{NODE}/{s}/config"}
        if CODES[name] == "P":
            topics.add(f"{prefix}-ha/sensor/{NODE}/{s}-energy/config")
    (state / "mqtt-retained.json").write_text(json.dumps(
        {"version": 1, "meters": {"main": {"topics": sorted(topics), "net": []}}}))
    return topics


async def test_the_counters_and_diagnostics_go_around_what_the_registers_hold(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    meter, url = sim
    p, ha, state = topic_prefix, f"{topic_prefix}-ha", tmp_path / "state"
    old_topics = previous_state(state, p)
    port = free_port()
    config = dataclasses.replace(gateway_config(broker, p, state, [("main", url)]),
                                 modbus=ModbusConfig(host="127.0.0.1", port=port))
    with subscriber(broker, f"{p}/#") as sub, subscriber(broker, f"{ha}/#") as disc, \
            structlog.testing.capture_logs() as logs:
        async with running_app(config):
            for s in SLUGS.values():
                await sub.await_for(f"{p}/main/register/{s}")
            await disc.await_for(f"{ha}/sensor/{NODE}/diagnostic-data_age/config")
            await disc.await_for(f"{ha}/sensor/{NODE}/grid-import/config")
            await check_modbus(meter, port)
    configs = {m.topic.removeprefix(f"{ha}/sensor/{NODE}/").removesuffix("/config"): m.json()
               for m in disc.messages if m.payload and "/sensor/" in m.topic}
    # the registers: their topics, unique_ids and entity ids are the old ones
    for s in SLUGS.values():
        assert configs[s]["unique_id"] == f"{NODE}_{s}"
        assert configs[s]["default_entity_id"] == f"sensor.main_{s}"
        assert configs[s]["state_topic"] == f"{p}/main/register/{s}"
    # the new entities go around them
    assert configs["grid-import"]["unique_id"] == f"{NODE}_grid-import"
    assert configs["grid-import"]["default_entity_id"] == \
        f"sensor.main_grid_import_{sha6('import:Grid')}"
    assert configs["grid-export"]["default_entity_id"] == "sensor.main_grid_export"
    assert configs["diagnostic-data_age"]["default_entity_id"] == \
        f"sensor.main_data_age_{sha6('diagnostic:data_age')}"
    ids = [c["default_entity_id"] for c in configs.values()]
    assert len(ids) == len(set(ids))  # no two entities claim one id
    cleared = [m.topic for m in sub.messages + disc.messages
               if m.payload == b"" and m.topic in old_topics]
    assert cleared == []
    # Modbus: every register kept its slot; Grid's import counter would have taken the slot
    # name of the register "Grid import": it gets none (logged), its export counter does
    pins = json.loads((state / "modbus" / "main.json").read_text())["pins"]
    assert {n: e["slot"] for n, e in pins.items() if n in SLOTS} == SLOTS
    assert pins["Grid import"]["type"] == "P"
    assert pins["Grid export"]["type"] == "P/export"
    assert pins["Grid export"]["slot"] > max(SLOTS.values())
    conflicts = [e for e in logs if e["event"] == "modbus_name_conflict"]
    assert [(e["name"], e["pinned_as"]) for e in conflicts] == [("Grid import", "register")]
    entities = json.loads((state / "slugs" / "main.json").read_text())["meta"]
    assert entities["entity:import:Grid"] == f"grid_import_{sha6('import:Grid')}"


async def check_modbus(meter: SimMeter, port: int) -> None:
    """Every register's rate at the address of its old slot."""
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
    assert await client.connect()
    try:
        for name, slot in SLOTS.items():
            async def matches(name: str = name, address: int = 100 + 6 * slot) -> bool:
                got = await rate_and_ts(client, 1, address)
                return got is not None and got[0] == f32(meter.rate(name, got[1]))

            await async_wait_until(matches, what=f"{name} at its old address")
    finally:
        client.close()
