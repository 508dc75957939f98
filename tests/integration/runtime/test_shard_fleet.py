"""Two shard instances of one configuration on one broker: every meter polled by exactly one,
each with its own bridge topics, requests answered once, the single-instance topics unused."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from gateway.config import Config, ShardConfig
from gateway.runtime import App
from gateway.simulator import ThreadedSimServer, fleet
from tests.support.broker import Broker
from tests.support.mqtt import Received, gateway_config, subscriber

COUNT = 2
METERS = 6


@contextlib.asynccontextmanager
async def instances(config: Config) -> AsyncIterator[list[App]]:
    """Both instances of ``config`` running (same file, same state directory)."""
    apps = [App(replace(config, shard=ShardConfig(i, COUNT))) for i in range(COUNT)]
    tasks = [asyncio.create_task(a.run(), name=f"shard-{i}") for i, a in enumerate(apps)]
    try:
        yield apps
    finally:
        for app in apps:
            app.request_stop()
        assert await asyncio.wait_for(asyncio.gather(*tasks), 20) == [0] * COUNT


def info(message: Received) -> dict[str, object]:
    data = message.json()
    assert isinstance(data, dict)
    return data


async def test_two_instances_split_the_meters_and_keep_their_own_bridge(
        broker: Broker, topic_prefix: str, tmp_path: Path,
        threaded_simulator: Callable[..., ThreadedSimServer]) -> None:
    sim = threaded_simulator(fleet(METERS))
    ids = [f"m{i}" for i in range(METERS)]
    config = gateway_config(broker, topic_prefix, tmp_path / "state",
                            list(zip(ids, sim.urls, strict=True)))
    gateway_id = config.gateway.id
    with subscriber(broker, f"{topic_prefix}/#") as sub:
        async with instances(config) as apps:
            bridges = [f"{topic_prefix}/bridge/{gateway_id}-{i}" for i in range(COUNT)]
            infos = [info(await sub.await_for(f"{b}/info")) for b in bridges]
            for b in bridges:
                await sub.await_for(f"{b}/state", lambda m: m.payload == b"online")
            served = [set(i["meters"]) for i in infos]  # type: ignore[call-overload]
            assert set.union(*served) == set(ids)
            assert sum(len(s) for s in served) == METERS, f"a meter polled twice: {served}"
            assert all(served), "the hash left an instance without meters"
            assert [info_["id"] for info_ in infos] == [f"{gateway_id}-{i}" for i in range(COUNT)]
            assert [set(a.pollers) for a in apps] == served
            for meter in ids:
                state = await sub.await_for(f"{topic_prefix}/{meter}/state")
                assert state.json()["meter"] == meter

            # a request reaches only the instance that polls the meter: one answer
            first, second = (sorted(s)[0] for s in served)
            for meter in (first, second):  # the second is answered by the other instance
                sub.client.publish(f"{topic_prefix}/{meter}/request/reboot",
                                   json.dumps({"transaction": meter}), qos=1)
                await sub.await_for(f"{topic_prefix}/{meter}/response/reboot")
            answers = sub.on(f"{topic_prefix}/{first}/response/reboot")
            assert [a.json()["transaction"] for a in answers] == [first]
            assert answers[0].json()["status"] == "error"  # reboot is not allowed here

            # an id no instance serves is answered by the one that would own it: once
            ghosts = [f"ghost{i}" for i in range(6)]
            for ghost in ghosts:
                sub.client.publish(f"{topic_prefix}/{ghost}/request/reboot",
                                   json.dumps({"transaction": ghost}), qos=1)
            for ghost in ghosts:
                await sub.await_for(f"{topic_prefix}/{ghost}/response/reboot")
            audited = [(b, m.json()["meter"]) for b in bridges for m in sub.on(f"{b}/audit")
                       if m.json()["meter"] in ghosts]
            owners = {b for b, _ in audited}
            # fences, one per instance: each answers its requests in order, so once its
            # fence is answered, so would a second answer to a ghost have been
            for meter in (first, second):
                sub.client.publish(f"{topic_prefix}/{meter}/request/reboot",
                                   json.dumps({"transaction": "fence"}), qos=1)
                await sub.await_for(f"{topic_prefix}/{meter}/response/reboot",
                                    lambda m: m.json()["transaction"] == "fence")
            for ghost in ghosts:
                [answer] = sub.on(f"{topic_prefix}/{ghost}/response/reboot")
                assert answer.json()["code"] == "invalid"
            assert len(owners) == COUNT, "the ids should spread over both instances"

        for b in bridges:
            await sub.await_for(f"{b}/state", lambda m: m.payload == b"offline")
        unsharded = f"{topic_prefix}/bridge/"
        assert not {t for t in sub.topics()
                    if t.startswith(unsharded) and t.count("/") == unsharded.count("/")}
    state = tmp_path / "state"
    assert (state / "mqtt-retained.json").is_file()
    assert (state / "instance-1" / "mqtt-retained.json").is_file()
    assert (state / "history.json").is_file()
    assert (state / "instance-1" / "history.json").is_file()
    # the pins of every meter, whichever instance serves it, in the shared state_dir
    assert sorted(p.stem for p in (state / "slugs").glob("*.json")) == sorted(ids)
    assert not (state / "instance-1" / "slugs").exists()


async def test_a_meter_that_moved_to_another_instance_is_not_cleared(
        broker: Broker, topic_prefix: str, tmp_path: Path,
        threaded_simulator: Callable[..., ThreadedSimServer]) -> None:
    """Instance 0 ran alone first (count 1) and left every meter in its ledger; after the
    split to two instances it forgets the meters it gave away instead of clearing them."""
    sim = threaded_simulator(fleet(METERS))
    ids = [f"m{i}" for i in range(METERS)]
    config = gateway_config(broker, topic_prefix, tmp_path / "state",
                            list(zip(ids, sim.urls, strict=True)))
    with subscriber(broker, f"{topic_prefix}/+/state") as sub:
        alone = App(config)
        task = asyncio.create_task(alone.run(), name="alone")
        for meter in ids:
            await sub.await_for(f"{topic_prefix}/{meter}/state")
        alone.request_stop()
        assert await asyncio.wait_for(task, 20) == 0
        sub.clear()
        async with instances(config) as apps:
            for meter in ids:
                await sub.await_for(f"{topic_prefix}/{meter}/state", lambda m: m.payload)
            assert all(a.pollers for a in apps)
        cleared = [m.topic for m in sub.messages if not m.payload]
        assert cleared == [], f"retained state of moved meters cleared: {cleared}"
