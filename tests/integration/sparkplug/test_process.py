"""``python -m gateway run -c FILE`` with Sparkplug as a real process: SIGKILL leaves the NDEATH
will with the bdSeq of the last NBIRTH, and the restarted gateway's NBIRTH carries the next
bdSeq (it is kept in the state directory); a SIGHUP reload births an added meter and kills a
removed one within the same session. Decoded with Eclipse Tahu's JavaScript decoder."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.integration.runtime.test_run_process import PASSWORD, start_gateway, write_config
from tests.support.broker import Broker
from tests.support.lifecycle import PASSWORD as LIFE_PASSWORD
from tests.support.lifecycle import MeterEntry, config_text, gateway_process
from tests.support.sparkplug import (
    Node,
    TahuCodec,
    aliases,
    check_seq,
    recorder,
    tahu_codec,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def tahu() -> Iterator[TahuCodec]:
    with tahu_codec() as codec:
        yield codec


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


async def test_sigkill_leaves_the_ndeath_of_the_last_nbirth_and_a_restart_counts_on(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    meter = SimMeter("SIM0911", password=PASSWORD)
    group = topic_prefix
    node = Node(group, "proc")
    with ThreadedSimServer([meter]) as sim, recorder(broker, tahu, node.filter) as rec:
        config = write_config(tmp_path / "gateway.yaml", broker, topic_prefix,
                              sim.url_for(meter), tmp_path / "state")
        with config.open("a") as f:
            f.write(f"sparkplug: {{enabled: true, group_id: {group}}}\n")
        proc = start_gateway(config, tmp_path / "gateway.log")
        try:
            first = await rec.await_for(node.topic("NBIRTH"))
            await rec.await_for(node.topic("DDATA", "main"))
            proc.kill()
            proc.wait(10)
            will = await rec.await_for(node.topic("NDEATH"))
            mark = len(rec.all())
            proc = start_gateway(config, tmp_path / "gateway-2.log")
            second = await rec.await_for(node.topic("NBIRTH"), after=mark)
            await rec.await_for(node.topic("DBIRTH", "main"), after=mark)
        finally:
            kill(proc)
    bdseq = first.by_name()["bdSeq"]["value"]
    assert bdseq == 0  # a fresh state directory
    death = will.by_name()["bdSeq"]
    assert (death["type"], death["value"]) == ("Int64", bdseq)
    assert len(will.metrics()) == 1  # the NDEATH holds bdSeq alone
    assert will.seq is None  # an NDEATH carries no seq
    assert (will.qos, will.retain) == (1, False)  # the will as Sparkplug sets it
    assert second.by_name()["bdSeq"]["value"] == bdseq + 1
    # the killed gateway said nothing else: the DDEATH of a clean stop is not there
    assert rec.on(node.topic("DDEATH", "main")) == []
    check_seq(node.sent(rec))


def test_a_reload_births_an_added_meter_and_kills_a_removed_one(
        broker: Broker, topic_prefix: str, tmp_path: Path, tahu: TahuCodec) -> None:
    a, b = SimMeter("SIM0912", password=LIFE_PASSWORD), SimMeter("SIM0913", password=LIFE_PASSWORD)
    node = Node(topic_prefix, "life")
    with ThreadedSimServer([a, b]) as server, recorder(broker, tahu, node.filter) as rec:
        one = [MeterEntry("a", server.url_for(a), 1)]
        two = [*one, MeterEntry("b", server.url_for(b), 2)]

        def text(meters: list[MeterEntry], modbus_port: int, http_port: int) -> str:
            return config_text(broker, topic_prefix, tmp_path / "state", meters,
                               modbus_port=modbus_port, http_port=http_port) + \
                f"sparkplug: {{enabled: true, group_id: {topic_prefix}}}\n"

        with gateway_process(tmp_path, lambda mp, hp: text(one, mp, hp)) as gw:
            rec.wait_for(node.topic("DBIRTH", "a"))
            gw.rewrite(text(two, gw.modbus_port, gw.http_port))
            gw.proc.send_signal(signal.SIGHUP)
            born = rec.wait_for(node.topic("DBIRTH", "b"))
            gw.rewrite(text(one, gw.modbus_port, gw.http_port))
            gw.proc.send_signal(signal.SIGHUP)
            rec.wait_for(node.topic("DDEATH", "b"))
            mark = len(rec.all())
            rec.wait_for(node.topic("DDATA", "a"), after=mark)
            assert gw.stop() == 0
    nbirth, = rec.on(node.topic("NBIRTH"))  # one session throughout
    assert born.by_name()["Properties/Serial Number"]["value"] == b.serial
    names = aliases(nbirth)
    counts = [metric["value"] for m in rec.on(node.topic("NDATA")) for metric in m.metrics()
              if names.get(int(metric["alias"])) == "Status/Meters"]
    assert counts == [2, 1]
    everything = rec.all()
    death = everything.index(rec.on(node.topic("DDEATH", "b"))[0])
    assert [m.topic for m in everything[death + 1:] if m.topic.endswith("/b")] == []
    check_seq(node.sent(rec))
