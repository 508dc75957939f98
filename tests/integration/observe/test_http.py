"""The HTTP endpoint of a running gateway (in this process) against the simulator over real
HTTP, a real Mosquitto and a real Modbus client: /metrics parses as Prometheus text and moves
with the polls, /readyz follows the meters and the outputs, the status page escapes what the
meter names, and the server answers methods and paths as HTTP says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pymodbus.client import AsyncModbusTcpClient

from gateway import __version__
from gateway.config import Config, HttpConfig, ModbusConfig, MqttConfig
from gateway.observe import exposition
from gateway.runtime import App
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer, Wave
from tests.support.broker import Broker, free_port
from tests.support.lifecycle import registers_read
from tests.support.mqtt import gateway_config, running_app
from tests.support.prometheus import registry
from tests.support.simulator import SIM_PASSWORD
from tests.support.waiting import LoopTurns, async_wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def full_config(broker: Broker, prefix: str, state_dir: Path, meter_url: str, *,
                mqtt: MqttConfig | None = None) -> Config:
    """Meter ``main`` (the ``sim_meter`` fixture) with MQTT, and Modbus and HTTP on loopback
    (any free port)."""
    base = gateway_config(broker, prefix, state_dir, [("main", meter_url)], offline_after=2)
    meters = tuple(replace(m, password=Secret(SIM_PASSWORD)) for m in base.meters)
    return replace(base, meters=meters, mqtt=mqtt or base.mqtt,
                   modbus=ModbusConfig(host="127.0.0.1", port=0),
                   http=HttpConfig(host="127.0.0.1", port=0))


@pytest.fixture
async def gateway(sim_server: SimServer, sim_meter: SimMeter, broker: Broker, topic_prefix: str,
                  tmp_path: Path) -> AsyncIterator[App]:
    config = full_config(broker, topic_prefix, tmp_path / "state", sim_server.url_for(sim_meter))
    async with running_app(config) as app:
        await async_wait_until(lambda: app.http is not None and app.http.port != 0,
                               what="the HTTP endpoint listening")
        yield app


def url(app: App, path: str) -> str:
    assert app.http is not None
    return f"{app.http.url}{path}"


async def scrape(app: App) -> tuple[str, Samples]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(url(app, "/metrics"))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return reply.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_parse_and_move_with_the_polls(gateway: App, sim_meter: SimMeter) -> None:
    app = gateway

    async def polls() -> float:
        _, samples = await scrape(app)
        return value(samples, "egauge_meter_polls_total", meter="main")

    first = await async_wait_until(polls, what="a successful poll in /metrics")
    assert isinstance(first, float)

    async def moved() -> bool:
        return await polls() > first

    await async_wait_until(moved, what="the poll counter moving")
    text, samples = await scrape(app)
    assert SIM_PASSWORD not in text
    ok = value(samples, "egauge_meter_polls_total", meter="main")
    # every successful poll is one latency observation, in the +Inf bucket too
    assert value(samples, "egauge_meter_poll_duration_seconds_count", meter="main") == ok
    assert value(samples, "egauge_meter_poll_duration_seconds_bucket", meter="main",
                 le="+Inf") == ok
    assert value(samples, "egauge_meter_logins_total", meter="main") == sim_meter.logins
    assert value(samples, "egauge_meter_online", meter="main") == 1
    assert value(samples, "egauge_mqtt_connected") == 1
    assert value(samples, "egauge_mqtt_published_total") > 0
    assert value(samples, "egauge_modbus_listening") == 1
    assert value(samples, "egauge_gateway_info", gateway=app.config.gateway.id,
                 version=__version__) == 1


async def test_a_request_cut_off_by_its_timeout_renews_the_pool_and_metrics_count_it(
        gateway: App, sim_meter: SimMeter) -> None:
    app = gateway
    await async_wait_until(lambda: app.pollers["main"].stats.polls_ok, what="a poll")
    _, before = await scrape(app)
    assert value(before, "egauge_meter_channel_renewals_total", meter="main") == 0
    sim_meter.faults.hang = 1  # the next request is taken and never answered
    await async_wait_until(lambda: app.pollers["main"].stats.polls_failed, what="a failed poll")

    async def renewed() -> float:
        _, samples = await scrape(app)
        return value(samples, "egauge_meter_channel_renewals_total", meter="main")

    assert await async_wait_until(renewed, what="the renewal in /metrics") == 1
    polled = app.pollers["main"].stats.polls_ok
    await async_wait_until(lambda: app.pollers["main"].stats.polls_ok > polled,
                           what="polls going on through the new pool")


async def test_the_scrape_is_what_generate_latest_writes_of_the_same_families(
        gateway: App) -> None:
    app = gateway
    await async_wait_until(lambda: app.pollers["main"].stats.polls_ok, what="a poll")
    assert app.http is not None
    families = list(app.http.registry.collect())  # one moment of the live state, written twice
    assert {f.type for f in families} >= {"counter", "gauge", "histogram"}
    frozen = registry(*families)
    assert exposition(frozen) == generate_latest(frozen)


async def test_a_scrape_lets_the_event_loop_run_between_its_pieces(gateway: App) -> None:
    app = gateway
    assert app.http is not None
    turns = await LoopTurns().start()
    body = await app.http.scrape()
    during = turns.stop()
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    assert families == {f.name for f in app.http.registry.collect()}
    assert during >= len(families)  # a turn of the loop after each family at least


async def test_name_parameters_pick_the_families_of_a_scrape(gateway: App) -> None:
    app = gateway
    await async_wait_until(lambda: app.pollers["main"].stats.polls_ok, what="a poll")
    _, everything = await scrape(app)
    async with httpx.AsyncClient() as client:
        reply = await client.get(url(app, "/metrics"), params=[
            ("name[]", "egauge_meter_polls_total"), ("name[]", "egauge_mqtt_connected"),
            ("name[]", "egauge_meter_poll_duration_seconds_bucket"), ("name[]", "egauge_nope")])
        none = await client.get(url(app, "/metrics?name[]=egauge_nope"))
    assert reply.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    assert set(families) == {"egauge_meter_polls", "egauge_mqtt_connected",
                             "egauge_meter_poll_duration_seconds"}
    assert len(families) < len({name for name, _ in everything})
    assert families["egauge_mqtt_connected"].samples[0].value == 1
    assert none.status_code == 200
    assert list(text_string_to_metric_families(none.text)) == []


async def test_modbus_requests_and_exceptions_by_function_code(gateway: App) -> None:
    app = gateway
    assert app.modbus is not None
    _, before = await scrape(app)
    assert ("egauge_modbus_requests_total", (("function", "4"),)) not in before
    client = AsyncModbusTcpClient("127.0.0.1", port=app.modbus.port)
    await client.connect()
    try:
        read = await client.read_input_registers(0, count=2, device_id=1)
        assert not read.isError()
        for _ in range(2):
            refused = await client.write_register(0, 1, device_id=1)  # FC06: read-only image
            assert refused.isError()
            assert refused.exception_code == 0x01
    finally:
        client.close()
    _, after = await scrape(app)
    assert value(after, "egauge_modbus_requests_total", function="4") == 1
    assert value(after, "egauge_modbus_requests_total", function="6") == 2
    assert value(after, "egauge_modbus_exceptions_total", function="6", code="0x01") == 2


async def readyz(app: App) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(url(app, "/readyz"))
    body = json.loads(reply.text)
    assert isinstance(body, dict)
    return reply.status_code, body


async def test_readyz_turns_unready_while_every_meter_is_down(gateway: App,
                                                              sim_meter: SimMeter) -> None:
    app = gateway

    async def ready() -> bool:
        return (await readyz(app))[0] == 200

    async def unready() -> bool:
        return (await readyz(app))[0] == 503

    await async_wait_until(ready, what="/readyz ready")
    code, body = await readyz(app)
    assert body == {"ready": True, "reasons": [], "fresh_meters": ["main"]}
    sim_meter.go_down(2.5)
    await async_wait_until(unready, what="/readyz unready")
    code, body = await readyz(app)
    assert code == 503
    assert body["ready"] is False
    assert body["fresh_meters"] == []
    assert body["reasons"] == ["meters: none polled successfully within 3 poll intervals"]
    await async_wait_until(ready, timeout=15, what="/readyz ready again once the meter is back")


async def test_readyz_names_an_unreachable_broker(sim_server: SimServer, sim_meter: SimMeter,
                                                  broker: Broker, topic_prefix: str,
                                                  tmp_path: Path) -> None:
    nowhere = MqttConfig(host="127.0.0.1", port=free_port(), base_topic=topic_prefix)
    config = full_config(broker, topic_prefix, tmp_path / "state",
                         sim_server.url_for(sim_meter), mqtt=nowhere)
    async with running_app(config) as app:
        await async_wait_until(lambda: app.hub.meter("main").reading is not None,
                               what="a first poll")
        code, body = await readyz(app)
    assert code == 503
    assert body["reasons"] == [f"mqtt: not connected to 127.0.0.1:{nowhere.port}"]
    assert body["fresh_meters"] == ["main"]


async def test_status_page_shows_the_meters_and_escapes_their_names(
        gateway: App, sim_meter: SimMeter) -> None:
    app = gateway
    nasty = "<img src=x onerror=alert(1)>"
    sim_meter.add_register(nasty, "P", Wave(100.0, 0.0, 600.0))
    await async_wait_until(lambda: nasty in registers_read(app, "main"),
                           what="the new register in a reading")
    async with httpx.AsyncClient() as client:
        reply = await client.get(url(app, "/"))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    page = reply.text
    assert "<h2>main</h2>" in page
    assert "<span class=on>online</span>" in page
    assert f"{sim_meter.model} {sim_meter.serial}" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert nasty not in page
    assert "<td>Temp Büro</td>" in page
    assert SIM_PASSWORD not in page


async def test_methods_paths_and_health(gateway: App) -> None:
    app = gateway
    async with httpx.AsyncClient() as client:
        health = await client.get(url(app, "/healthz"))
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        head = await client.head(url(app, "/metrics"))
        assert head.status_code == 200
        assert int(head.headers["content-length"]) > 0
        assert head.content == b""
        post = await client.post(url(app, "/metrics"), content=b"x")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        missing = await client.get(url(app, "/nothing-here"))
        assert missing.status_code == 404


async def test_http_counters_in_metrics(gateway: App) -> None:
    app = gateway
    assert app.http is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http.port)
    writer.write(b"GARBAGE\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400 ")
    writer.close()
    _, first = await scrape(app)
    assert value(first, "egauge_http_rejected_total", status="400") == 1
    assert value(first, "egauge_http_connections") >= 1  # the scrape's own
    _, second = await scrape(app)
    assert value(second, "egauge_http_requests_total") > value(first, "egauge_http_requests_total")
    assert value(second, "egauge_http_connections_accepted_total") >= 3
