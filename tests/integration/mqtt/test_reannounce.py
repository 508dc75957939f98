"""The broker restarts (losing every retained message) while the gateway runs: the gateway
reconnects and re-announces bridge state, availability, device, discovery and state."""

from __future__ import annotations

from pathlib import Path

import structlog

from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import gateway_config, running_app, subscriber
from tests.support.waiting import async_wait_until


async def test_everything_is_re_announced_after_a_broker_restart(
    own_broker: Broker, topic_prefix: str, tmp_path: Path
) -> None:
    meter = SimMeter("SIM0101")
    p, ha = topic_prefix, f"{topic_prefix}-ha"
    must = [f"{p}/bridge/state", f"{p}/bridge/info", f"{p}/main/availability",
            f"{p}/main/device", f"{p}/main/state", f"{p}/main/register/grid",
            f"{ha}/sensor/egauge_SIM0101/grid/config",
            f"{ha}/sensor/egauge_SIM0101/grid-energy/config"]
    async with SimServer([meter]) as server:
        config = gateway_config(own_broker, p, tmp_path / "state",
                                [("main", server.url_for(meter))])
        with structlog.testing.capture_logs() as logs:
            async with running_app(config) as app:
                with subscriber(own_broker, f"{p}/#") as sub:
                    await sub.await_for(f"{p}/main/availability", lambda m: m.payload == b"online")
                own_broker.restart()  # persistence is off: the retained store is empty now
                await async_wait_until(
                    lambda: [e["event"] for e in logs].count("mqtt_connected") >= 2,
                    timeout=20, what="the gateway reconnected")
                with subscriber(own_broker, f"{p}/#") as after, \
                        subscriber(own_broker, f"{ha}/#") as after_ha:
                    for topic in must:
                        await (after_ha if topic.startswith(ha) else after).await_for(topic)
                # ... and they are retained: a subscriber that arrives now gets all of them
                with subscriber(own_broker, f"{p}/#") as late, \
                        subscriber(own_broker, f"{ha}/#") as late_ha:
                    for topic in must:
                        got = await (late_ha if topic.startswith(ha) else late).await_for(
                            topic, lambda m: m.retain)
                        assert got.payload, topic
                    assert late.last(f"{p}/bridge/state").payload == b"online"  # type: ignore[union-attr]
                    assert late.last(f"{p}/main/availability").payload == b"online"  # type: ignore[union-attr]
                assert app.pollers["main"].stats.polls_failed == 0  # the meter never noticed
    assert any(e["event"] == "mqtt_disconnected" for e in logs)
