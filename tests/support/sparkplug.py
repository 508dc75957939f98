"""Test-side Sparkplug helpers (no tests here): Eclipse Tahu's JavaScript payload package as an
independent codec (tests/support/sparkplug_js, not the gateway's encoder), a recording MQTT 5
subscriber that decodes with it, and gateway configurations with Sparkplug on.

The recorder subscribes with retain-as-published, so the retain flag it sees is the one the
message was published with (a broker clears it for live subscribers otherwise).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import CommandPolicy, Config, HistoryConfig, SparkplugConfig
from tests.support.broker import Broker, require_binary
from tests.support.mqtt import gateway_config
from tests.support.waiting import async_wait_until, wait_until

ROOT = Path(__file__).resolve().parents[2]
CODEC_DIR = ROOT / "tests" / "support" / "sparkplug_js"
NS = "spBv1.0"
_ids = itertools.count()
# the units of the type codes the simulator uses (egauge-webapi: rate unit; cumulative
# values of power registers in k<unit>h, of the others in <unit>·s)
UNITS = {"P": ("W", "kWh"), "S": ("VA", "kVAh"), "var": ("var", "kvarh"), "PQ": ("var", "kvarh"),
         "I": ("A", "A·s"), "V": ("V", "V·s"), "T": ("°C", "°C·s"), "F": ("Hz", "Hz·s")}


class TahuCodec:
    """tests/support/sparkplug_js/codec.js in one Node process: Sparkplug B payloads to and from
    plain dicts (Tahu's shape: ``{timestamp, seq, metrics: [{name, alias, type, value,
    timestamp, isHistorical, properties: {key: {type, value}}}]}``)."""

    def __init__(self) -> None:
        node = require_binary("node")
        if not (CODEC_DIR / "node_modules" / "sparkplug-payload").is_dir():
            pytest.fail("tests/support/sparkplug_js/node_modules is missing: ./scripts/test "
                        "installs it (npm ci --prefix tests/support/sparkplug_js)")
        self._proc = subprocess.Popen([node, str(CODEC_DIR / "codec.js")], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            pytest.fail(f"the Tahu codec ended (exit code {self._proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise ValueError(f"Tahu codec: {reply['error']}")
        return reply

    def decode(self, data: bytes) -> dict[str, Any]:
        payload: dict[str, Any] = self._ask({"decode": base64.b64encode(data).decode()})["payload"]
        return payload

    def encode(self, payload: dict[str, Any]) -> bytes:
        return base64.b64decode(self._ask({"encode": payload})["bytes"])

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


@contextlib.contextmanager
def tahu_codec() -> Iterator[TahuCodec]:
    codec = TahuCodec()
    try:
        yield codec
    finally:
        codec.close()


@dataclass(frozen=True)
class Message:
    topic: str
    raw: bytes
    retain: bool
    qos: int
    body: Any  # the decoded Sparkplug payload, or the JSON of other topics (audit, STATE)

    @property
    def verb(self) -> str:
        return self.topic.split("/")[2] if self.topic.startswith(NS + "/") else ""

    @property
    def seq(self) -> int | None:
        value = self.body.get("seq")
        return None if value is None else int(value)

    def metrics(self) -> list[dict[str, Any]]:
        return list(self.body.get("metrics", []))

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {metric["name"]: metric for metric in self.metrics()}


class Recorder:
    """An MQTT 5 subscriber on ``topic_filters`` (retain as published) that decodes each
    Sparkplug message with the Tahu codec as it arrives."""

    def __init__(self, broker: Broker, codec: TahuCodec, topic_filters: Sequence[str]) -> None:
        self.codec = codec
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._filters = tuple(topic_filters)
        self.client = paho.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"spb-rec-{next(_ids)}-{time.time_ns()}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, what=f"subscribed to {self._filters}")

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        options = SubscribeOptions(qos=1, retainAsPublished=True)
        client.subscribe([(f, options) for f in self._filters])

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        raw = bytes(msg.payload)
        if msg.topic.startswith(NS + "/") and "/STATE/" not in msg.topic:
            try:
                body: Any = self.codec.decode(raw)
            except ValueError as exc:  # e.g. the malformed commands a test sends
                body = {"undecodable": str(exc)}
        else:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        with self._lock:
            self.messages.append(Message(msg.topic, raw, bool(msg.retain), msg.qos, body))

    def all(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def on(self, topic: str) -> list[Message]:
        return [m for m in self.all() if m.topic == topic]

    async def await_for(self, topic: str, match: Callable[[Message], object] = lambda m: True,
                        timeout: float = 20.0, after: int = 0) -> Message:
        """The first message on ``topic`` at or after index ``after`` that matches."""
        def found() -> Message | None:
            return next((m for m in self.all()[after:] if m.topic == topic and match(m)), None)

        result = await async_wait_until(found, timeout=timeout, what=f"a message on {topic}")
        assert isinstance(result, Message)
        return result

    def wait_for(self, topic: str, match: Callable[[Message], object] = lambda m: True,
                 timeout: float = 20.0, after: int = 0) -> Message:
        """:meth:`await_for` for tests that are not coroutines."""
        def found() -> Message | None:
            return next((m for m in self.all()[after:] if m.topic == topic and match(m)), None)

        result = wait_until(found, timeout=timeout, what=f"a message on {topic}")
        assert isinstance(result, Message)
        return result

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def recorder(broker: Broker, codec: TahuCodec, *topic_filters: str) -> Iterator[Recorder]:
    rec = Recorder(broker, codec, topic_filters)
    try:
        yield rec
    finally:
        rec.close()


@dataclass(frozen=True)
class Node:
    """The topics of one Edge Node, as the specification names them."""

    group: str
    node: str

    def topic(self, verb: str, device: str | None = None) -> str:
        tail = f"/{device}" if device is not None else ""
        return f"{NS}/{self.group}/{verb}/{self.node}{tail}"

    @property
    def filter(self) -> str:
        return f"{NS}/{self.group}/#"

    def sent(self, rec: Recorder) -> list[Message]:
        """Every message of this node except commands to it, in arrival order."""
        prefix = f"{NS}/{self.group}/"
        return [m for m in rec.all() if m.topic.startswith(prefix)
                and m.verb not in ("NCMD", "DCMD") and m.topic.split("/")[3] == self.node]


def spb_config(broker: Broker, prefix: str, state_dir: Path, meters: list[tuple[str, str]], *,
               allow: Sequence[str] = (), primary_host_id: str | None = None,
               history: bool = True, poll_interval_s: float = 0.5, offline_after: int = 3
               ) -> tuple[Config, Node]:
    """A gateway with the JSON MQTT output under ``prefix`` and Sparkplug on (group
    ``prefix``, edge node = the gateway id); every meter allows ``allow``."""
    config = gateway_config(broker, prefix, state_dir, meters, poll_interval_s=poll_interval_s,
                            offline_after=offline_after)
    config = replace(
        config,
        meters=tuple(replace(m, commands=CommandPolicy(allow=tuple(allow)))
                     for m in config.meters),
        history=HistoryConfig(enabled=history),
        sparkplug=SparkplugConfig(enabled=True, group_id=prefix,
                                  primary_host_id=primary_host_id),
    )
    return config, Node(prefix, config.gateway.id)


def aliases(*births: Message) -> dict[int, str]:
    """alias -> name of the metrics these births declare."""
    return {int(m["alias"]): m["name"] for b in births for m in b.metrics() if "alias" in m}


def register_of(metric: dict[str, Any]) -> str:
    return str(metric["properties"]["registerName"]["value"])


def check_seq(messages: Sequence[Message]) -> None:
    """``seq`` as Sparkplug sets it: 0 on every NBIRTH, one more (mod 256) on each message
    after it, none on NDEATH."""
    last: int | None = None
    for m in messages:
        if m.verb == "NDEATH":
            assert m.seq is None, m
            continue
        if m.verb == "NBIRTH":
            assert m.seq == 0, m
        else:
            assert last is not None, f"{m.topic} before any NBIRTH"
            assert m.seq == (last + 1) % 256, (m.topic, m.seq, last)
        last = m.seq
