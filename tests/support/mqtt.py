"""Test-side MQTT helpers (no tests here): a recording paho subscriber, broker set-ups."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import trustme
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import (
    Config,
    GatewaySection,
    HomeAssistant,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
)
from gateway.mqtt import MqttConnection
from gateway.runtime import App
from gateway.secret import Secret
from gateway.simulator import SimMeter
from tests.support.broker import Broker, require_binary, start_broker
from tests.support.waiting import async_wait_until, wait_until

_ids = itertools.count()
# mosquitto started as root drops to user "mosquitto", which cannot read files in pytest's
# private temporary directories; "user root" keeps it (no effect for other users)
_KEEP_USER = "user root\n"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    correlation_data: bytes | None
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client of the test's own that records every message it receives."""

    def __init__(self, host: str, port: int, topic_filter: str, *, v5: bool = False,
                 username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None, retain_as_published: bool = False) -> None:
        """``retain_as_published`` (MQTT 5 only): live messages keep the retain flag their
        publisher set, so ``Received.retain`` tells what the gateway retained."""
        self.topic_filter = topic_filter
        self._options = SubscribeOptions(qos=1, retainAsPublished=True) \
            if retain_as_published else None
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{next(_ids)}-{time.time_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, 30)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, timeout=10, what=f"subscribed to {topic_filter}")

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        if self._options is not None:
            client.subscribe(self.topic_filter, options=self._options)
        else:
            client.subscribe(self.topic_filter, qos=1)

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos,
                            getattr(props, "CorrelationData", None), time.monotonic())
        with self._lock:
            self.messages.append(received)

    def on(self, topic: str) -> list[Received]:
        return self.where(lambda m: m.topic == topic)

    def where(self, match: Callable[[Received], bool]) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if match(m)]

    def last(self, topic: str) -> Received | None:
        found = self.on(topic)
        return found[-1] if found else None

    def topics(self) -> set[str]:
        with self._lock:
            return {m.topic for m in self.messages}

    def wait_for(self, topic: str, match: Callable[[Received], object] = lambda m: True,
                 timeout: float = 15.0) -> Received:
        def found() -> Received | None:
            return next((m for m in reversed(self.on(topic)) if match(m)), None)

        result = wait_until(found, timeout=timeout, what=f"a matching message on {topic}")
        assert isinstance(result, Received)
        return result

    async def await_for(self, topic: str, match: Callable[[Received], object] = lambda m: True,
                        timeout: float = 15.0) -> Received:
        def found() -> Received | None:
            return next((m for m in reversed(self.on(topic)) if match(m)), None)

        result = await async_wait_until(found, timeout=timeout,
                                        what=f"a matching message on {topic}")
        assert isinstance(result, Received)
        return result

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def subscriber(broker: Broker, topic_filter: str, **kw: Any) -> Iterator[Subscriber]:
    sub = Subscriber(broker.host, broker.port, topic_filter, **kw)
    try:
        yield sub
    finally:
        sub.close()


@contextlib.asynccontextmanager
async def running(conn: MqttConnection) -> AsyncIterator[asyncio.Task[None]]:
    """Run a connection's reconnect loop for the duration of the block, then close it."""
    task = asyncio.create_task(conn.run(), name="mqtt-connection")
    try:
        yield task
    finally:
        await conn.close(grace_s=2.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def mqtt_config(broker: Broker, **kw: Any) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, **kw)


def password_broker(directory: Path, users: dict[str, str]) -> Broker:
    """A broker that admits only these users (a ``mosquitto_passwd -b`` password file)."""
    directory.mkdir(parents=True, exist_ok=True)
    pwfile = directory / "passwd"
    tool = require_binary("mosquitto_passwd")
    for i, (user, password) in enumerate(users.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run([tool, *flags, "-b", str(pwfile), user, password], check=True)
    pwfile.chmod(0o600)
    return start_broker(directory, f"{_KEEP_USER}allow_anonymous false\npassword_file {pwfile}\n")


@dataclass
class TlsFiles:
    ca: trustme.CA
    ca_file: Path
    client_cert: Path
    client_key: Path


def tls_broker(directory: Path, *, require_client_cert: bool = False) -> tuple[Broker, TlsFiles]:
    """A broker on TLS only, with certificates from trustme (server name 127.0.0.1)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("gateway-client")
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "server.pem": server.cert_chain_pems[0].bytes(),
        "server.key": server.private_key_pem.bytes(),
        "client.pem": client.cert_chain_pems[0].bytes(),
        "client.key": client.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    conf = (
        f"{_KEEP_USER}cafile {directory / 'ca.pem'}\ncertfile {directory / 'server.pem'}\n"
        f"keyfile {directory / 'server.key'}\n"
        f"require_certificate {'true' if require_client_cert else 'false'}\n"
    )
    broker = start_broker(directory, conf)
    return broker, TlsFiles(ca, directory / "ca.pem", directory / "client.pem",
                            directory / "client.key")


def gateway_config(broker: Broker, prefix: str, state_dir: Path,
                   meters: list[tuple[str, str]], *, poll_interval_s: float = 0.5,
                   offline_after: int = 3, **mqtt: Any) -> Config:
    """A gateway for ``(meter id, simulator URL)`` pairs; MQTT under ``prefix`` (discovery
    under ``prefix-ha``); no Modbus, no HTTP."""
    return Config(
        gateway=GatewaySection(id=f"gw-{prefix[-20:]}".lower(), state_dir=str(state_dir),
                               shutdown_timeout_s=5.0),
        meters=tuple(
            MeterConfig(mid, url, "owner", Secret("default"), poll_interval_s=poll_interval_s,
                        timeout_s=poll_interval_s * 0.8, offline_after=offline_after)
            for mid, url in meters
        ),
        mqtt=MqttConfig(host=broker.host, port=broker.port, base_topic=prefix,
                        homeassistant=HomeAssistant(prefix=f"{prefix}-ha"), **mqtt),
        modbus=ModbusConfig(enabled=False),
        http=HttpConfig(enabled=False),
    )


@contextlib.asynccontextmanager
async def running_app(config: Config) -> AsyncIterator[App]:
    """Run the gateway in this loop; on leaving, stop it as SIGTERM would and expect exit 0."""
    app = App(config)
    task = asyncio.create_task(app.run(), name="app")
    try:
        await async_wait_until(lambda: app.pollers or task.done(), what="the gateway started")
        assert not task.done(), task
        yield app
    finally:
        app.request_stop()
        assert await asyncio.wait_for(task, 20) == 0


def expected_cumulative(meter: SimMeter, name: str, ts: float) -> float:
    """The cumulative value a reading should carry, derived from the simulator and the spec:
    relative to the database epoch (egauge-webapi §2.1 ``raw``), W·s shown as kWh for power."""
    since_epoch = meter.cumulative(name, ts) - meter.cumulative(name, meter.epoch)
    return since_epoch / 3_600_000 if meter.register(name).type_code in ("P", "S", "var", "PQ") \
        else since_epoch


@dataclass
class LegacyBroker:
    """A front for a real broker that speaks only MQTT 3.1.1, as a broker before MQTT 5
    does: a CONNECT of protocol level 5 is refused with CONNACK return code 1
    ("unacceptable protocol version") and the connection closed; everything else is
    passed through to the real broker."""

    host: str
    port: int
    refused_v5: int = 0


@contextlib.asynccontextmanager
async def legacy_broker(broker: Broker) -> AsyncIterator[LegacyBroker]:
    front = LegacyBroker(broker.host, 0)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(2)  # CONNECT: fixed header, remaining length
            length_bytes = head[1:]
            while length_bytes[-1] & 0x80:
                length_bytes += await reader.readexactly(1)
            length, shift = 0, 0
            for byte in length_bytes:
                length += (byte & 0x7F) << shift
                shift += 7
            body = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        level = body[2 + int.from_bytes(body[:2], "big")]  # after the protocol name
        if level == 5:
            front.refused_v5 += 1
            writer.write(b"\x20\x02\x00\x01")
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(broker.host, broker.port)
        up_writer.write(head[:1] + length_bytes + body)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, broker.host, 0)
    front.port = server.sockets[0].getsockname()[1]
    try:
        yield front
    finally:
        server.close()
        await server.wait_closed()
