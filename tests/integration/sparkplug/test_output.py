"""The Sparkplug B Edge Node end to end: the gateway in this process, the simulator over real
HTTP, a real Mosquitto, and Eclipse Tahu's JavaScript decoder reading what arrives (not the
gateway's own encoder). Births, data by exception, seq, rebirth, malformed commands and the
primary host's STATE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway import __version__
from gateway.mqtt import slug
from gateway.simulator import SimMeter, SimServer
from tests.support.broker import Broker
from tests.support.mqtt import expected_cumulative, running_app
from tests.support.sparkplug import (
    UNITS,
    Message,
    Recorder,
    TahuCodec,
    aliases,
    check_seq,
    recorder,
    register_of,
    spb_config,
    tahu_codec,
)
from tests.support.waiting import async_wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tahu() -> Iterator[TahuCodec]:
    with tahu_codec() as codec:
        yield codec


def check_register_values(meter: SimMeter, message: Message, names: dict[int, str],
                          births: dict[str, dict]) -> int:
    """Every register metric of ``message`` against the simulator at the metric's own
    timestamp; the number of values checked."""
    checked = 0
    for metric in message.metrics():
        name = metric.get("name") or names[int(metric["alias"])]
        if not name.startswith("Registers/"):
            continue
        register = register_of(births[name])
        t = metric["timestamp"] / 1000
        if name.endswith(("/Import", "/Export")):  # counters (tests/integration/energy)
            assert metric["value"] is None or metric["value"] >= 0, (name, t)
            checked += 1
            continue
        if name.endswith("/Rate"):
            assert metric["value"] == pytest.approx(meter.rate(register, t), rel=1e-4,
                                                    abs=0.01), (name, t)
        else:
            assert metric["value"] == pytest.approx(expected_cumulative(meter, register, t),
                                                    rel=1e-6, abs=1e-4), (name, t)
        checked += 1
    return checked


async def test_births_and_data_as_tahus_decoder_reads_them(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0901")
    async with SimServer([meter]) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))])
        with recorder(broker, tahu, node.filter) as rec:
            async with running_app(config):
                await async_wait_until(lambda: len(rec.on(node.topic("DDATA", "main"))) >= 3,
                                       what="three DDATA of main")
                running = len(rec.all())
    nbirth, = rec.on(node.topic("NBIRTH"))
    dbirth, = rec.on(node.topic("DBIRTH", "main"))
    for m in (nbirth, dbirth, *rec.on(node.topic("DDATA", "main"))):
        assert (m.qos, m.retain) == (0, False)
    check_seq(node.sent(rec))
    assert nbirth.seq == 0

    node_metrics = nbirth.by_name()
    assert node_metrics["bdSeq"]["type"] == "Int64"
    assert node_metrics["bdSeq"]["value"] == 0  # a fresh state directory: the first session
    rebirth = node_metrics["Node Control/Rebirth"]
    assert (rebirth["type"], rebirth["value"]) == ("Boolean", False)
    assert "alias" not in rebirth
    assert node_metrics["Properties/Software Version"]["value"] == __version__

    birth = dbirth.by_name()
    names = aliases(nbirth, dbirth)
    declared = [m for b in (nbirth, dbirth) for m in b.metrics() if "alias" in m]
    assert len(names) == len(declared)  # aliases unique across the whole node
    for register in meter.registers:
        rate_unit, cumulative_unit = UNITS[register.type_code]
        for kind, unit in (("Rate", rate_unit), ("Cumulative", cumulative_unit)):
            metric = birth[f"Registers/{slug(register.name)}/{kind}"]
            assert metric["type"] == "Double"
            props = {k: v["value"] for k, v in metric["properties"].items()}
            assert props == {"engUnit": unit, "egaugeType": register.type_code,
                             "registerName": register.name}
    # registers that run both ways also carry their import and export counters
    both_ways = [r for r in meter.registers if r.type_code in ("P", "PQ", "var")
                 and not r.name.endswith("+")]
    for register in both_ways:
        for kind in ("Import", "Export"):
            metric = birth[f"Registers/{slug(register.name)}/{kind}"]
            assert metric["type"] == "Double"
            assert metric["properties"]["engUnit"]["value"] == UNITS[register.type_code][1]
    assert len([n for n in birth if n.startswith("Registers/")]) == \
        2 * len(meter.registers) + 2 * len(both_ways)
    assert birth["Properties/Serial Number"]["value"] == meter.serial
    assert birth["Properties/Hardware Model"]["value"] == meter.model
    assert birth["Properties/Hostname"]["value"] == meter.hostname
    assert birth["Status/Online"]["value"] is True
    assert "Relays/1" not in birth  # not in commands.allow: not offered
    assert check_register_values(meter, dbirth, names, birth) == \
        2 * len(meter.registers) + 2 * len(both_ways)

    live = [m for m in rec.all()[:running] if m.topic == node.topic("DDATA", "main")]
    for ddata in live:
        for metric in ddata.metrics():
            assert "name" not in metric  # data messages name metrics by alias alone
            assert int(metric["alias"]) in names
            assert not metric.get("isHistorical")
        assert check_register_values(meter, ddata, names, birth) > 0
    # a clean stop: the meter offline, its DDEATH, then the NDEATH with this session's bdSeq
    goodbye = [m for m in node.sent(rec)[len(node.sent(rec)) - 4:]]
    assert [m.verb for m in goodbye] == ["DDATA", "DDEATH", "NDATA", "NDEATH"]
    assert [names[int(m["alias"])] for m in goodbye[0].metrics()] == ["Status/Online"]
    assert goodbye[0].metrics()[0]["value"] is False
    assert goodbye[3].by_name()["bdSeq"]["value"] == 0
    assert (goodbye[3].qos, goodbye[3].retain) == (1, False)


async def test_ncmd_rebirth_sends_every_birth_again_with_seq_from_0(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meters = {"main": SimMeter("SIM0902"), "garage": SimMeter("SIM0903")}
    async with SimServer(list(meters.values())) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [(mid, server.url_for(m)) for mid, m in meters.items()])
        with recorder(broker, tahu, node.filter) as rec:
            async with running_app(config):
                for mid in meters:
                    await rec.await_for(node.topic("DDATA", mid))
                first, = rec.on(node.topic("NBIRTH"))
                mark = len(rec.all())
                rec.publish(node.topic("NCMD"), tahu.encode(
                    {"timestamp": 1, "metrics": [{"name": "Node Control/Rebirth",
                                                  "type": "Boolean", "value": True}]}))
                again = await rec.await_for(node.topic("NBIRTH"), after=mark)
                for mid in meters:
                    await rec.await_for(node.topic("DDATA", mid), after=mark)
    sent = node.sent(rec)
    check_seq(sent)
    assert again.seq == 0
    assert again.by_name()["bdSeq"]["value"] == first.by_name()["bdSeq"]["value"]  # same session
    after = sent[sent.index(again):]
    # NBIRTH, then every DBIRTH before any data: seq 1 and 2 are the two DBIRTHs
    assert [m.verb for m in after[:3]] == ["NBIRTH", "DBIRTH", "DBIRTH"]
    assert {m.topic for m in after[1:3]} == {node.topic("DBIRTH", mid) for mid in meters}
    assert [m.seq for m in after[:3]] == [0, 1, 2]
    # the aliases of the rebirth are the first birth's
    births_before = [m for m in sent[:sent.index(again)] if m.verb in ("NBIRTH", "DBIRTH")]
    assert aliases(*births_before) == aliases(*after[:3])


async def test_malformed_and_unknown_commands_are_logged_once_and_change_nothing(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0904")
    async with SimServer([meter]) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))], allow=("relay",))
        audit = f"{topic_prefix}/bridge/audit"
        with recorder(broker, tahu, node.filter, audit) as rec, capture_logs() as logs:
            async with running_app(config) as app:
                await rec.await_for(node.topic("DDATA", "main"))
                mark = len(rec.all())
                for _ in range(3):
                    rec.publish(node.topic("NCMD"), b"\xff\xff not protobuf")
                    rec.publish(node.topic("DCMD", "main"), b"\x12\x10\x0a")  # cut short
                unknown = tahu.encode({"metrics": [{"name": "Registers/grid/Rate",
                                                    "type": "Double", "value": 1.0}]})
                rec.publish(node.topic("DCMD", "main"), unknown)
                assert app.sparkplug is not None
                stats = app.sparkplug.stats
                await async_wait_until(lambda: stats.malformed == 6 and stats.ignored == 1,
                                       what="six malformed commands and one ignored")
                await rec.await_for(node.topic("DDATA", "main"), after=len(rec.all()))
                later = rec.all()[mark:]
    assert [m.verb for m in later if m.verb in ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH")] == []
    assert [m for m in later if m.topic == audit] == []  # nothing reached the router
    check_seq(node.sent(rec))
    assert meter.relays == (False, False, False)
    malformed = [e for e in logs if e["event"] == "sparkplug_command_malformed"]
    assert sorted(e["verb"] for e in malformed) == ["DCMD", "NCMD"]  # once each, not 3 times
    assert all(e["log_level"] == "warning" for e in malformed)


async def test_births_wait_for_the_primary_host_and_follow_its_state(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0905")
    host = f"{topic_prefix}-scada"
    state_topic = f"spBv1.0/STATE/{host}"
    async with SimServer([meter]) as server:
        config, node = spb_config(broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))], primary_host_id=host)
        with recorder(broker, tahu, node.filter, state_topic) as rec:
            try:
                async with running_app(config) as app:
                    await async_wait_until(lambda: app.pollers["main"].stats.polls_ok >= 3,
                                           what="three polls")
                    assert app.sparkplug is not None
                    assert app.sparkplug.connected
                    assert rec.on(node.topic("NBIRTH")) == []  # no host yet: no birth
                    online = {"online": True, "timestamp": 1_000}
                    rec.publish(state_topic, json.dumps(online).encode(), retain=True)
                    await rec.await_for(node.topic("DBIRTH", "main"))
                    # a stale offline (older timestamp) changes nothing
                    rec.publish(state_topic, b'{"online": false, "timestamp": 999}', retain=True)
                    # an NCMD after it from the same client arrives after it: once it was
                    # handled, so was the STATE
                    rec.publish(node.topic("NCMD"), tahu.encode(
                        {"metrics": [{"name": "Node Control/Nothing", "type": "Boolean",
                                      "value": True}]}))
                    spb = app.sparkplug
                    await async_wait_until(lambda: spb.stats.ignored == 1, what="the NCMD")
                    mark = len(rec.all())
                    await rec.await_for(node.topic("DDATA", "main"), after=mark)
                    assert rec.on(node.topic("NDEATH")) == []
                    rec.publish(state_topic, b'{"online": false, "timestamp": 2000}',
                                retain=True)
                    ndeath = await rec.await_for(node.topic("NDEATH"))
                    mark = len(rec.all())
                    rec.publish(state_topic, b"ONLINE", retain=True)  # the pre-3.0 form
                    again = await rec.await_for(node.topic("NBIRTH"), after=mark)
                    await rec.await_for(node.topic("DBIRTH", "main"), after=mark)
            finally:
                rec.publish(state_topic, b"", retain=True)
    births = rec.on(node.topic("NBIRTH"))
    assert len(births) == 2
    bdseq = births[0].by_name()["bdSeq"]["value"]
    assert ndeath.by_name()["bdSeq"]["value"] == bdseq
    assert again.by_name()["bdSeq"]["value"] == bdseq + 1  # it reconnected: a new session
    # the goodbye to the offline host (no will: it disconnected), and the clean stop's
    deaths = [m.by_name()["bdSeq"]["value"] for m in rec.on(node.topic("NDEATH"))]
    assert deaths == [bdseq, bdseq + 1]
    between = [m for m in node.sent(rec) if m.verb == "DDATA"
               and rec.all().index(m) > rec.all().index(ndeath)
               and rec.all().index(m) < rec.all().index(again)]
    assert between == []  # nothing while the host was offline
    check_seq(node.sent(rec))


async def test_a_new_mqtt_session_is_born_again_with_the_next_bdseq(
        own_broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0906")
    async with SimServer([meter]) as server:
        config, node = spb_config(own_broker, topic_prefix, tmp_path / "state",
                                  [("main", server.url_for(meter))])
        before = Recorder(own_broker, tahu, [node.filter])
        try:
            async with running_app(config) as app:
                spb = app.sparkplug
                assert spb is not None
                first = await before.await_for(node.topic("NBIRTH"))
                await before.await_for(node.topic("DDATA", "main"))
                before.close()
                own_broker.restart()
                await async_wait_until(lambda: spb.stats.births == 2,
                                       what="a birth in a new session")
                with recorder(own_broker, tahu, node.filter) as rec:
                    rec.publish(node.topic("NCMD"), tahu.encode(
                        {"metrics": [{"name": "Node Control/Rebirth", "type": "Boolean",
                                      "value": True}]}))
                    again = await rec.await_for(node.topic("NBIRTH"))
                    await rec.await_for(node.topic("DDATA", "main"), after=len(rec.all()))
                    later = node.sent(rec)
                assert spb.connection.stats.queued == 0  # nothing of the old session waits
        finally:
            before.close()
    assert first.by_name()["bdSeq"]["value"] == 0
    assert again.by_name()["bdSeq"]["value"] == 1  # a new MQTT session: the next bdSeq
    check_seq(later[later.index(again):])  # the recorder came in during the session
