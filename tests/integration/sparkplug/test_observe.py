"""The Edge Node on the gateway's own views: /readyz names a Sparkplug session that is down,
/metrics counts births and messages, the status page lists it as an output."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observe import exposition, readiness, registry_for, render_status
from gateway.runtime.view import AppView
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import running_app
from tests.support.sparkplug import spb_config
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


def samples(view: AppView) -> dict[str, float]:
    text = exposition(registry_for(view)).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.startswith("egauge_sparkplug_")}


async def test_sparkplug_on_readyz_metrics_and_status(own_broker: Broker, topic_prefix: str,
                                                      tmp_path: Path) -> None:
    meter = SimMeter("SIM0951")
    async with SimServer([meter]) as server:
        config, node = spb_config(own_broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))])
        async with running_app(config) as app:
            view = AppView(app)
            await async_wait_until(lambda: samples(view).get("egauge_sparkplug_births_total"),
                                   what="an NBIRTH counted")
            metrics = samples(view)
            assert metrics["egauge_sparkplug_connected"] == 1
            assert metrics["egauge_sparkplug_sent_total"] >= 1
            page = render_status(view, 0).decode()
            assert "Sparkplug B" in page
            assert node.topic("NBIRTH") in page
            own_broker.stop()
            await async_wait_until(lambda: not app.sparkplug or not app.sparkplug.connected,
                                   what="the Edge Node's session lost")
            ready = readiness(view, 0)
            assert any(r.startswith("sparkplug: not connected") for r in ready.reasons)
            assert samples(view)["egauge_sparkplug_connected"] == 0
            own_broker.start()
