"""An MQTT request flood against the whole gateway (in this process, real broker, simulator
over real HTTP): every request gets exactly one answer, the meter never sees more commands
than the router's rate limit, no more than the queue limit wait at once, and polling goes on."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import CommandPolicy
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import gateway_config, running_app, subscriber
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration

FLOOD = 1500
WAVES = 5


async def test_a_request_flood_is_answered_once_each_and_rate_limited(
        broker: Broker, topic_prefix: str, tmp_path: Path) -> None:
    p = topic_prefix
    meter = SimMeter("SIM0701")
    async with SimServer([meter]) as server:
        config = gateway_config(broker, p, tmp_path / "state", [("main", server.url_for(meter))],
                                poll_interval_s=0.25)
        allowed = replace(config.meters[0], commands=CommandPolicy(allow=("cmd:clear",)))
        config = replace(config, meters=(allowed,))
        with subscriber(broker, f"{p}/main/#") as sub:
            async with running_app(config) as app:
                assert app.router is not None
                limits = app.router.limits
                await sub.await_for(f"{p}/main/availability", lambda m: m.payload == b"online")
                states_before = len(sub.on(f"{p}/main/state"))
                body = {"name": "clear", "body": "excess"}
                for wave in range(WAVES):  # each wave fills the queue; later ones hit the rate
                    for i in range(wave * FLOOD // WAVES, (wave + 1) * FLOOD // WAVES):
                        sub.client.publish(f"{p}/main/request/cmd",
                                           json.dumps({**body, "transaction": f"f{i}"}), qos=0)
                    await async_wait_until(
                        lambda w=wave: len(sub.on(f"{p}/main/response/cmd"))
                        >= (w + 1) * FLOOD // WAVES, timeout=60, what=f"answers to wave {wave}")
                assert app.pollers["main"].stats.online
                assert len(sub.on(f"{p}/main/state")) > states_before  # polling went on
    answers = [m.json() for m in sub.on(f"{p}/main/response/cmd")]
    assert len(answers) == FLOOD
    assert sorted(a["transaction"] for a in answers) == sorted(f"f{i}" for i in range(FLOOD))
    executed = meter.calls_to("/cmd/clear", "POST")
    ok = [a for a in answers if a["status"] == "ok"]
    assert len(executed) == len(ok) == limits.rate  # five full queues exceed the rate
    busy = [a for a in answers if a["status"] == "error"]
    assert {a["code"] for a in busy} == {"busy"}
    assert len(ok) + len(busy) == FLOOD
    assert any("rate limit" in a["error"] for a in busy)
    assert any("commands waiting" in a["error"] for a in busy)  # the queue limit


async def test_requests_for_a_command_not_allowed_never_reach_the_meter(
        broker: Broker, topic_prefix: str, tmp_path: Path) -> None:
    """The default policy allows nothing: a flood of reboots is refused, the meter untouched."""
    p = topic_prefix
    meter = SimMeter("SIM0702")
    async with SimServer([meter]) as server:
        config = gateway_config(broker, p, tmp_path / "state", [("main", server.url_for(meter))])
        assert config.meters[0].commands.allow == ()
        with subscriber(broker, f"{p}/main/#") as sub:
            async with running_app(config):
                # published after the gateway subscribed to its request topics
                await sub.await_for(f"{p}/main/availability", lambda m: m.payload == b"online")
                for i in range(200):
                    sub.client.publish(f"{p}/main/request/reboot",
                                       json.dumps({"transaction": i}), qos=1)
                await async_wait_until(lambda: len(sub.on(f"{p}/main/response/reboot")) >= 200,
                                       timeout=30, what="200 answers")
    codes = {m.json()["code"] for m in sub.on(f"{p}/main/response/reboot")}
    assert codes == {"not_allowed"}
    assert meter.calls_to("/cmd/reboot", "POST") == []
