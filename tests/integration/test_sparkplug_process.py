"""``python -m gateway run -c FILE`` with Sparkplug as a real process: SIGKILL leaves the NDEATH
will with the bdSeq of the last NBIRTH, and the restarted gateway's NBIRTH carries the next
bdSeq (it is kept in the state directory). Decoded with Eclipse Tahu's JavaScript decoder."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.conftest import Broker
from tests.integration.test_run_process import PASSWORD, start_gateway, write_config
from tests.integration.test_sparkplug_helpers import (
    Node,
    TahuCodec,
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
