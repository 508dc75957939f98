"""The scenario of issue "Identities that never move", end to end: a simulated meter whose
register set changes at run time (through its /__sim__/ control endpoint), the gateway, and a
real broker read by an MQTT 5 subscriber with retain-as-published (so a live message shows the
retain flag the gateway set).

With "Panel A/B" on the meter, "Panel A-B" is added: "Panel A/B" keeps its slug, its topic,
its discovery unique_id and object_id; the new register gets the suffix. A restart changes
nothing; removing a register and adding it again gives it its old slug back. The expected
suffix is computed from the documented rule (SHA-1 of the name), not by the gateway's code."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.mqtt import Received, Subscriber, gateway_config, running_app, subscriber
from tests.support.simulator import change_registers

pytestmark = pytest.mark.integration

SERIAL = "SIM0701"
OLD, NEW = "Panel A/B", "Panel A-B"
OLD_SLUG = "panel_a_b"  # slug("Panel A/B"), pinned first
NEW_SLUG = "panel_a_b_" + hashlib.sha1(NEW.encode(), usedforsecurity=False).hexdigest()[:6]
NEW_RATE = 777.0  # "Panel A-B" reads a constant; "Panel A/B" is always negative


@pytest.fixture
def sim() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter(SERIAL)
    with ThreadedSimServer([meter], control=True) as server:
        yield meter, server.url_for(meter)


def config_path(prefix: str, slug: str) -> str:
    return f"{prefix}-ha/sensor/egauge_{SERIAL}/{slug}/config"


async def await_state(sub: Subscriber, prefix: str, slugs: set[str],
                      absent: set[str] = frozenset()) -> dict[str, Any]:
    def fits(m: Received) -> bool:
        got = set(m.json()["registers"])
        return bool(slugs <= got and not (absent & got))

    message = await sub.await_for(f"{prefix}/main/state", fits)
    registers: dict[str, Any] = message.json()["registers"]
    return registers


def identity_of(message: Received) -> tuple[str, str, str, str]:
    cfg = message.json()
    return cfg["unique_id"], cfg["object_id"], cfg["default_entity_id"], cfg["state_topic"]


async def test_a_look_alike_name_never_takes_an_existing_identity(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    _, url = sim
    p = topic_prefix
    config = gateway_config(broker, p, tmp_path / "state", [("main", url)])
    add_new = {"add": [{"name": NEW, "type": "P", "base": NEW_RATE, "amp": 0.0}]}
    old_cfg, new_cfg = config_path(p, OLD_SLUG), config_path(p, NEW_SLUG)
    expected_old = (f"egauge_{SERIAL}_{OLD_SLUG}", f"main_{OLD_SLUG}",
                    f"sensor.main_{OLD_SLUG}", f"{p}/main/register/{OLD_SLUG}")
    expected_new = (f"egauge_{SERIAL}_{NEW_SLUG}", f"main_{NEW_SLUG}",
                    f"sensor.main_{NEW_SLUG}", f"{p}/main/register/{NEW_SLUG}")
    with subscriber(broker, f"{p}/#", v5=True, retain_as_published=True) as sub, \
            subscriber(broker, f"{p}-ha/#", v5=True, retain_as_published=True) as ha:
        async with running_app(config):
            assert identity_of(await ha.await_for(old_cfg)) == expected_old
            energy = (await ha.await_for(config_path(p, f"{OLD_SLUG}-energy"))).json()
            assert energy["object_id"] == f"main_{OLD_SLUG}_energy"
            registers = await await_state(sub, p, {OLD_SLUG})
            assert registers[OLD_SLUG]["name"] == OLD

            # "Panel A-B" appears on the meter (it sorts before "Panel A/B")
            sub.clear()
            ha.clear()
            await change_registers(url, **add_new)
            assert identity_of(await ha.await_for(new_cfg)) == expected_new
            registers = await await_state(sub, p, {OLD_SLUG, NEW_SLUG})
            assert (registers[OLD_SLUG]["name"], registers[NEW_SLUG]["name"]) == (OLD, NEW)
            assert registers[NEW_SLUG]["rate"] == NEW_RATE
            assert registers[OLD_SLUG]["rate"] < 0
            old_values = await sub.await_for(f"{p}/main/register/{OLD_SLUG}")
            new_values = await sub.await_for(f"{p}/main/register/{NEW_SLUG}")
            assert float(old_values.payload) < 0
            assert old_values.retain
            assert float(new_values.payload) == NEW_RATE
            assert new_values.retain
            # the old entity was never deleted (no empty config) nor changed
            assert all(identity_of(m) == expected_old for m in ha.on(old_cfg))

        # a restart changes nothing
        sub.clear()
        ha.clear()
        async with running_app(config):
            assert identity_of(await ha.await_for(old_cfg)) == expected_old
            assert identity_of(await ha.await_for(new_cfg)) == expected_new
            registers = await await_state(sub, p, {OLD_SLUG, NEW_SLUG})
            assert (registers[OLD_SLUG]["name"], registers[NEW_SLUG]["name"]) == (OLD, NEW)

            # removed: its entity goes; back: the same slug again
            ha.clear()
            await change_registers(url, remove=[NEW])
            await ha.await_for(new_cfg, lambda m: m.payload == b"" and m.retain)
            await await_state(sub, p, {OLD_SLUG}, absent={NEW_SLUG})
            ha.clear()
            await change_registers(url, **add_new)
            assert identity_of(await ha.await_for(new_cfg, lambda m: m.payload != b"")) == \
                expected_new
            registers = await await_state(sub, p, {OLD_SLUG, NEW_SLUG})
            assert registers[NEW_SLUG]["name"] == NEW

            # the original goes away while the look-alike stays: nobody takes panel_a_b,
            # and when "Panel A/B" comes back it gets panel_a_b again
            ha.clear()
            await change_registers(url, remove=[OLD])
            await ha.await_for(old_cfg, lambda m: m.payload == b"")
            registers = await await_state(sub, p, {NEW_SLUG}, absent={OLD_SLUG})
            assert registers[NEW_SLUG]["name"] == NEW
            ha.clear()
            await change_registers(url, add=[{"name": OLD, "type": "P", "base": -350.0}])
            assert identity_of(await ha.await_for(old_cfg, lambda m: m.payload != b"")) == \
                expected_old
            registers = await await_state(sub, p, {OLD_SLUG, NEW_SLUG})
            assert (registers[OLD_SLUG]["name"], registers[NEW_SLUG]["name"]) == (OLD, NEW)
            assert not [m for m in ha.on(new_cfg) if m.payload == b""]  # never disturbed


RELOAD_CONFIG = """\
gateway: {{id: reloads, state_dir: "{state}"}}
meters:
  - {{id: main, url: "{url}", username: owner, password: default, poll_interval_s: {interval},
     registers: {registers}}}
mqtt: {{host: {host}, port: {port}, base_topic: {prefix}, homeassistant: {{prefix: {prefix}-ha}}}}
modbus: {{enabled: false}}
http: {{enabled: false}}
"""


async def test_a_reload_keeps_the_pins_even_while_a_register_is_left_out(
        broker: Broker, topic_prefix: str, tmp_path: Path, sim: tuple[SimMeter, str]) -> None:
    """A changed meter gets a fresh output plan on reload; its slugs come from the pins."""
    _, url = sim
    p, path = topic_prefix, tmp_path / "gateway.yaml"

    def write(interval: float, registers: str) -> None:
        path.write_text(RELOAD_CONFIG.format(state=tmp_path / "state", url=url, interval=interval,
                                             registers=registers, host=broker.host,
                                             port=broker.port, prefix=p))
        path.chmod(0o600)

    write(0.5, "all")
    with subscriber(broker, f"{p}/main/state") as sub:
        async with running_app(load_config(path)) as app:
            await await_state(sub, p, {OLD_SLUG})
            await change_registers(url, add=[{"name": NEW, "type": "P", "base": NEW_RATE}])
            await await_state(sub, p, {OLD_SLUG, NEW_SLUG})
            write(0.4, f"[{NEW!r}, Grid]")  # "Panel A/B" is no longer polled
            assert await app.reload()
            registers = await await_state(sub, p, {NEW_SLUG, "grid"}, absent={OLD_SLUG})
            assert registers[NEW_SLUG]["name"] == NEW
            write(0.5, "all")
            assert await app.reload()
            registers = await await_state(sub, p, {OLD_SLUG, NEW_SLUG})
            assert (registers[OLD_SLUG]["name"], registers[NEW_SLUG]["name"]) == (OLD, NEW)
