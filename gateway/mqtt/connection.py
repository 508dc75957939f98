"""The one place that uses paho-mqtt: a connection that keeps itself connected.

paho runs on the asyncio loop: the loop watches its socket and calls ``loop_read`` /
``loop_write`` (paho's external-loop interface), a task calls ``loop_misc`` every second for
the keep-alive, and only the blocking connect (TCP, TLS handshake) runs in a worker thread.
No network thread: at thousands of messages per second, handing every publish and every
acknowledgement between two threads (and their GIL) cost more than the MQTT work itself.
Callbacks reach the loop's own code through ``call_soon``; received messages reach their
handlers in batches of :data:`DISPATCH_BATCH` per turn of the loop, so a flood of requests
never holds up polls, and while :data:`INBOUND_LIMIT` wait the socket is not read (the broker
holds the rest). The reconnect loop is ours (paho's
own is turned off) so that every failed attempt becomes one ``mqtt_connect_failed`` event
with a reason, the attempt number and the delay before the next try (exponential, with
jitter, capped).

While the broker is unreachable, publishes wait in a bounded queue: when it is full the
oldest *droppable* message (state, register values) goes first, then the oldest of the rest;
drops are counted. On every connect the queue is flushed first and then the ``on_connected``
hooks run, so re-announced state is always newer than anything queued. A publish may carry
an ``on_ack`` callback, run once the broker acknowledged the message (paho sends messages
still unacknowledged again after a reconnect, so it may come only then).

``mqtt.protocol: auto`` (the default) connects with MQTT 5 and, when the broker refuses that
version (CONNACK "unsupported protocol version"), with 3.1.1 at once and from then on
(``mqtt_protocol_fallback``); "5" and "3.1.1" use only that version.

The PUBLISH packets of one write turn go out in one ``send`` (:mod:`gateway.mqtt.batched`).
QoS 0 messages are written with paho's ``on_publish`` callback unset (unless one of them
waits for its ``on_ack``): for each QoS 0 message it calls, paho builds a reason code and a
properties object, which made up more than half of the CPU of a QoS 0 publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import MqttConfig, MqttTls
from gateway.errors import ConfigError
from gateway.mqtt.batched import BatchedClient
from gateway.mqtt.message import Handler, InboundMessage
from gateway.mqtt.outbox import Outbox, Outgoing

log = structlog.get_logger(__name__)

STABLE_S = 30.0  # a session that lasted this long resets the backoff
REFUSED_PROTOCOL = "unsupported protocol version"  # a CONNACK refusing the MQTT version
DISPATCH_BATCH = 16  # received messages handed to the handlers per turn of the event loop
INBOUND_LIMIT = 1024  # received messages waiting for their handlers: the socket is not read
# the longest wait between connection attempts: a refused connect costs nothing, and a broker
# back from an outage waits no longer than this for the gateway (and its backlog)
RETRY_MAX_S = 10.0
_PROTOCOLS = {"3.1.1": MQTTProtocolVersion.MQTTv311, "5": MQTTProtocolVersion.MQTTv5}


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes when the gateway vanishes without a goodbye."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(slots=True)
class ConnectionStats:
    """Counters for metrics and status pages."""

    connected: bool = False
    connects: int = 0
    connect_failures: int = 0
    published: int = 0
    dropped: int = 0
    received: int = 0
    queued: int = 0
    read_pauses: int = 0  # times the socket was left unread while handlers caught up


def tls_context(tls: MqttTls) -> ssl.SSLContext:
    """An SSL context for the broker; unreadable files are a :class:`ConfigError`."""
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"mqtt.tls: cannot load certificates: {describe(exc)}"]) from exc
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe(exc: BaseException) -> str:
    """A short, secret-free reason for a failed connection attempt."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed: {exc.strerror}"
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc) or type(exc).__name__).lower()
    return str(exc) or type(exc).__name__


class MqttConnection:
    """A self-healing MQTT client: ``run()`` connects and reconnects until ``close()``."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        will: Will | None = None,
        *,
        retry_min_s: float = 1.0,
        retry_max_s: float = RETRY_MAX_S,
        rng: random.Random | None = None,
    ) -> None:
        self._cfg = cfg
        self._retry = (retry_min_s, retry_max_s)
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self.client_id = client_id
        self._will = will
        self._tls = tls_context(cfg.tls) if cfg.tls is not None else None
        self._auto = cfg.protocol == "auto"
        self._protocol = "5" if self._auto else cfg.protocol
        self._client = self._new_client()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._watched: int | None = None  # the socket's fd the loop reads from
        self._writing: int | None = None  # the socket's fd the loop waits to write to
        self._keepalive: asyncio.Task[None] | None = None
        self._hooks: list[Callable[[], None]] = []
        self._will_source: Callable[[], Will] | None = None
        # filter -> (QoS, retain-as-published, handlers)
        self._subscriptions: dict[str, tuple[int, bool, list[Handler]]] = {}
        self._outbox = Outbox(cfg.queue_limit)
        self._seq = 0
        self._inflight: set[int] = set()
        self._qos0_acks: set[int] = set()  # QoS 0 messages whose on_ack waits for the write
        # mid -> on_ack; kept across reconnects, as paho sends unacknowledged messages again
        self._acks: dict[int, Callable[[], None]] = {}
        self._acked: deque[int] = deque()  # filled by paho's callbacks, emptied on the loop
        self._acks_scheduled = False
        self._inbound: deque[InboundMessage] = deque()  # received, not yet handed out
        self._inbound_scheduled = False
        self._reading_paused = False
        self._drained = asyncio.Event()
        self._connack: asyncio.Future[str | None] | None = None
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._lost_reason = ""
        self._closing = False
        self._network_lock = asyncio.Lock()
        self._queue_full_logged = False
        self.stats = ConnectionStats()

    def _new_client(self) -> BatchedClient:
        """A paho client for the protocol in use (``self._protocol``), with every setting."""
        cfg = self._cfg
        client = BatchedClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=_PROTOCOLS[self._protocol],
            reconnect_on_failure=False,
        )
        # no paho-side window: with one, paho scans every in-flight message on each PUBACK
        # (O(window) per message), which falls behind at thousands of messages per second
        client.max_inflight_messages_set(0)
        if cfg.username is not None:
            password = cfg.password.reveal() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
            if cfg.tls is not None and cfg.tls.insecure:
                client.tls_insecure_set(True)
        if self._will is not None:
            will = self._will
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_message = self._paho_message
        client.on_publish = self._paho_publish
        client.on_socket_open = self._paho_socket_open
        client.on_socket_close = self._paho_socket_close
        client.on_socket_register_write = self._paho_want_write
        client.on_socket_unregister_write = self._paho_done_writing
        return client

    @property
    def _v5(self) -> bool:
        return self._protocol == "5"

    @property
    def protocol(self) -> str:
        """The MQTT version in use: "5" or "3.1.1" (with ``protocol: auto``, "3.1.1" once the
        broker refused 5)."""
        return self._protocol

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The topic filters subscribed (kept across reconnects)."""
        return tuple(self._subscriptions)

    @property
    def connected(self) -> bool:
        return self.stats.connected

    def on_connected(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (on the loop, after the queue is flushed) on every (re)connect."""
        self._hooks.append(hook)

    def will_from(self, source: Callable[[], Will]) -> None:
        """Take the will from ``source`` (run on the loop) before every connection attempt,
        instead of the one given at construction (e.g. a will that numbers the sessions)."""
        self._will_source = source

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1, *,
                  retain_as_published: bool = False) -> None:
        """Deliver matching messages to ``handler``; kept across reconnects. With
        ``retain_as_published`` (MQTT 5; the first subscriber of a filter decides) a message
        published retained keeps its retain flag also when it is delivered live, so a
        handler can tell it apart; under 3.1.1 the broker clears the flag for live
        subscribers and only messages delivered on subscription carry it."""
        known = topic_filter in self._subscriptions
        self._subscriptions.setdefault(topic_filter, (qos, retain_as_published, []))[2].append(
            handler)
        if self.connected and not known:
            self._subscribe(topic_filter, qos, retain_as_published)

    def _subscribe(self, topic_filter: str, qos: int, retain_as_published: bool) -> None:
        if self._v5:
            options = SubscribeOptions(qos=qos, retainAsPublished=retain_as_published)
            self._client.subscribe(topic_filter, options=options)
        else:
            self._client.subscribe(topic_filter, qos)

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        *,
        droppable: bool = False,
        correlation_data: bytes | None = None,
        on_ack: Callable[[], None] | None = None,
        queue: bool = True,
    ) -> None:
        """Hand a message to the network thread (or queue it while disconnected); never
        blocks. ``droppable`` marks messages that a newer one replaces (state, values);
        ``queue=False`` drops the message instead of queueing it (it belongs to a session).
        ``on_ack`` runs on the loop once the broker acknowledged the message (QoS 1 and 2;
        QoS 0: once it was written); never for a message that was dropped or rejected."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        self._seq += 1
        if self.connected and self._send(topic, data, qos, retain, correlation_data, on_ack):
            return
        if queue:
            self._enqueue(Outgoing(self._seq, topic, data, qos, retain, correlation_data,
                                   on_ack), droppable)

    def publish_values(self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
                       ) -> None:
        """Publish several droppable messages (the register values of one poll): at QoS 0
        while connected, as one entry of paho's queue; otherwise each as :meth:`publish`."""
        if qos == 0 and self.connected:
            try:
                queued = self._client.publish_qos0_many(messages, retain)
            except ValueError as exc:  # one bad topic: each on its own, the bad one refused
                log.error("mqtt_publish_rejected", error=str(exc), messages=len(messages))
                queued = False
            if queued:
                self._seq += len(messages)
                self.stats.published += len(messages)
                return
        for topic, payload in messages:
            self.publish(topic, payload, qos, retain, droppable=True)

    async def run(self) -> None:
        """Connect, and reconnect with backoff whenever the connection fails, until closed.

        After a lost session the next attempt waits ``retry_min_s``; a session that ended
        within ``STABLE_S`` counts as a failed attempt, so a connection that is accepted and
        dropped at once (e.g. another client with the same id) backs off as well."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        attempt = 0
        try:
            while not self._closing:
                attempt += 1
                started = time.monotonic()
                reason = await self._session()
                if self._closing:
                    break
                if reason == REFUSED_PROTOCOL and self._auto and self._v5:
                    self._fall_back(reason)
                    attempt -= 1  # not a failure: the same attempt in the other version
                    continue
                if reason is None:
                    if time.monotonic() - started >= STABLE_S:
                        attempt = 0
                    delay = self._delay(max(attempt, 1))
                else:
                    self.stats.connect_failures += 1
                    delay = self._delay(attempt)
                    log.warning(
                        "mqtt_connect_failed",
                        host=self._cfg.host,
                        port=self._cfg.port,
                        reason=reason,
                        attempt=attempt,
                        retry_in_s=round(delay, 3),
                    )
                await self._pause(delay)
        finally:
            self.stats.connected = False
            await asyncio.shield(self._stop_network())

    def _fall_back(self, reason: str) -> None:
        """``protocol: auto`` and the broker refused MQTT 5: 3.1.1 from now on (at once, as
        the next attempt; the broker does not change its mind while the process runs)."""
        log.warning("mqtt_protocol_fallback", host=self._cfg.host, port=self._cfg.port,
                    refused="5", protocol="3.1.1", reason=reason)
        self._protocol = "3.1.1"
        self._client = self._new_client()

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when :meth:`close` is called."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def reconnect(self) -> None:
        """End the current session with DISCONNECT (the broker drops the will) and connect
        again after the usual pause; nothing happens while there is no session."""
        if self.connected:
            self._client.disconnect()

    async def close(self, grace_s: float = 5.0) -> None:
        """Wait (up to ``grace_s``) until what was published is on the wire, then send
        DISCONNECT (so the broker does not publish the will) and stop the network thread."""
        self._closing = True
        self._wake.set()
        if self.connected:
            try:
                async with asyncio.timeout(grace_s):
                    while self._inflight:
                        self._drained.clear()
                        await self._drained.wait()
            except TimeoutError:
                log.warning("mqtt_close_unflushed", inflight=len(self._inflight))
            self._client.disconnect()
            try:
                async with asyncio.timeout(grace_s):
                    await self._lost.wait()
            except TimeoutError:
                pass
        self.stats.connected = False
        await self._stop_network()
        log.info("mqtt_closed", host=self._cfg.host, port=self._cfg.port)

    # -- one connection attempt and the session that follows --------------------------------

    async def _session(self) -> str | None:
        """Connect once; return the failure reason, or ``None`` after a session that ended."""
        loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        self._lost.clear()
        if self._will_source is not None:
            will = self._will_source()
            self._client.will_set(will.topic, will.payload, will.qos, will.retain)
        try:
            await asyncio.to_thread(self._connect)
        except (OSError, ValueError) as exc:
            return describe(exc)
        if self._closing:
            self._client.disconnect()
            await self._stop_network()
            return None
        async with asyncio.TaskGroup() as group:  # owns the session's keep-alive task
            keepalive = self._keepalive = group.create_task(self._keep_alive(),
                                                            name="mqtt-keepalive")
            try:
                return await self._connected_session()
            finally:
                keepalive.cancel()

    async def _connected_session(self) -> str | None:
        """After the TCP connect: wait for CONNACK, then run the session until it is lost."""
        connack = self._connack
        assert connack is not None
        refused: str | None
        try:
            async with asyncio.timeout(max(5.0, float(self._cfg.keepalive_s))):
                refused = await connack
        except TimeoutError:
            refused = "no CONNACK from the broker"
        if refused is not None:
            self._client.disconnect()
            await self._stop_network()
            return refused
        self._start_session()
        await self._lost.wait()
        self.stats.connected = False
        self._inflight.clear()
        for mid in self._qos0_acks:  # never written: paho sends only QoS 1 and 2 again
            self._acks.pop(mid, None)
        self._qos0_acks.clear()
        self._drained.set()
        await self._stop_network()
        if not self._closing:
            log.warning("mqtt_disconnected", host=self._cfg.host, reason=self._lost_reason)
        return None

    async def _stop_network(self) -> None:
        """Stop the keep-alive task and stop watching the socket (one caller at a time)."""
        async with self._network_lock:
            task, self._keepalive = self._keepalive, None
            if task is not None:
                task.cancel()  # the session's task group waits for it to end
            self._unwatch()

    async def _keep_alive(self) -> None:
        """paho's periodic work: PINGREQ when idle, and a dead connection noticed."""
        while True:
            await asyncio.sleep(1.0)
            self._client.loop_misc()

    # -- the socket on the asyncio loop -------------------------------------------------------

    def _readable(self) -> None:
        client = self._client
        client.loop_read()
        # TLS may hold decrypted bytes that no longer show as readable on the socket
        while (pending := getattr(client.socket(), "pending", None)) is not None and pending():
            client.loop_read()
        if len(self._inbound) >= INBOUND_LIMIT:
            self._pause_reading()

    def _pause_reading(self) -> None:
        """Backpressure: the handlers are behind, so the broker's bytes wait in the socket
        (and at the broker) until they caught up (:meth:`_hand_out`)."""
        if self._loop is not None and self._watched is not None and not self._reading_paused:
            self._loop.remove_reader(self._watched)
            self._reading_paused = True
            self.stats.read_pauses += 1

    def _resume_reading(self) -> None:
        if self._loop is not None and self._watched is not None and self._reading_paused:
            self._loop.add_reader(self._watched, self._readable)
        self._reading_paused = False

    def _writable(self) -> None:
        client = self._client
        if self._qos0_acks:  # a QoS 0 message waits for its write to be reported
            client.write()
            return
        client.on_publish = None  # only QoS 0 messages report from loop_write: nothing waits
        try:
            client.write()
        finally:
            client.on_publish = self._paho_publish

    def _watch(self, fd: int) -> None:
        self._unwatch()
        if self._loop is not None:
            self._loop.add_reader(fd, self._readable)
            self._watched = fd

    def _unwatch(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._watched is not None:
            loop.remove_reader(self._watched)
            self._watched = None
        self._reading_paused = False
        self._stop_writing()

    def _start_writing(self, fd: int) -> None:
        if self._loop is not None and self._writing is None:
            self._loop.add_writer(fd, self._writable)
            self._writing = fd

    def _stop_writing(self) -> None:
        if self._loop is not None and self._writing is not None:
            self._loop.remove_writer(self._writing)
            self._writing = None

    def _connect(self) -> None:
        kwargs: dict[str, Any] = {"clean_start": True} if self._v5 else {}
        self._client.connect(self._cfg.host, self._cfg.port, self._cfg.keepalive_s, **kwargs)

    def _start_session(self) -> None:
        self.stats.connected = True
        self.stats.connects += 1
        self._queue_full_logged = False
        log.info("mqtt_connected", host=self._cfg.host, port=self._cfg.port,
                 client_id=self.client_id, protocol=self._protocol,
                 queued=self.stats.queued)
        for topic_filter, (qos, retain_as_published, _) in self._subscriptions.items():
            self._subscribe(topic_filter, qos, retain_as_published)
        self._flush()
        for hook in self._hooks:
            try:
                hook()
            except Exception as exc:
                log.error("mqtt_hook_failed", hook=repr(hook), error=repr(exc), exc_info=exc)

    def _delay(self, attempt: int) -> float:
        low, high = self._retry
        jitter: float = self._rng.uniform(0.8, 1.0)
        return min(high, low * 2.0 ** min(attempt - 1, 30)) * jitter

    # -- outgoing -------------------------------------------------------------------------------

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool,
              correlation_data: bytes | None, on_ack: Callable[[], None] | None) -> bool:
        """Hand one message to paho; False when it must be queued (the connection is gone).
        The fields one by one, not an :class:`Outgoing`: this runs for every message."""
        if qos == 0 and on_ack is None and correlation_data is None:
            try:  # the common case (register values): no objects paho makes for a message
                sent = self._client.publish_qos0(topic, payload, retain)
            except ValueError as exc:
                log.error("mqtt_publish_rejected", topic=topic, error=str(exc))
                return True
            if sent:
                self.stats.published += 1
            return sent
        props = None
        if self._v5 and correlation_data is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation_data
        try:
            info = self._client.publish(topic, payload, qos, retain, props)
        except ValueError as exc:  # an invalid topic or an oversized payload
            log.error("mqtt_publish_rejected", topic=topic, error=str(exc))
            return True
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0:
            return False  # lost the connection a moment ago: queue it
        self.stats.published += 1
        if qos == 0 and on_ack is None:
            return True  # nothing waits for it: written in order, before any DISCONNECT
        self._inflight.add(info.mid)
        if on_ack is not None:
            self._acks[info.mid] = on_ack
            if qos == 0:
                self._qos0_acks.add(info.mid)
        return True

    def _enqueue(self, msg: Outgoing, droppable: bool) -> None:
        if self._outbox.put(msg, droppable) and not self._queue_full_logged:
            self._queue_full_logged = True
            log.warning("mqtt_queue_full", limit=self._outbox.limit)
        self.stats.dropped = self._outbox.dropped
        self.stats.queued = len(self._outbox)

    def _flush(self) -> None:
        pending = self._outbox.drain()
        self.stats.queued = 0
        for msg in pending:
            if not self._send(msg.topic, msg.payload, msg.qos, msg.retain,
                              msg.correlation_data, msg.on_ack):
                self._enqueue(msg, droppable=False)

    # -- paho callbacks (network thread) -> the asyncio loop ----------------------------------

    def _to_loop(self, func: Callable[..., None], *args: object) -> None:
        """Run ``func`` on the loop soon (not inside paho's call, which holds its locks)."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(func, *args)
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: the process is ending
            loop.call_soon_threadsafe(func, *args)

    def _on_loop(self, func: Callable[..., None], *args: object) -> None:
        """Run ``func`` now on the loop's thread, or soon from another (the connect)."""
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            self._to_loop(func, *args)

    def _paho_socket_open(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        # no Nagle: a QoS 0 message waits for no PUBACK to carry the broker's ACK back, so
        # small writes would otherwise sit in the kernel up to a delayed ACK (40 ms)
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._on_loop(self._watch, sock.fileno())

    def _paho_socket_close(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        self._client.forget_unsent()
        self._on_loop(self._unwatch)  # before paho closes it: on the loop, this is at once

    def _paho_want_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._on_loop(self._start_writing, sock.fileno())

    def _paho_done_writing(self, _c: paho.Client, _u: Any, _sock: Any) -> None:
        self._on_loop(self._stop_writing)

    def _paho_connect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        refused = str(reason).lower() if reason.is_failure else None
        self._to_loop(self._connack_arrived, refused)

    def _paho_disconnect(
        self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any
    ) -> None:
        self._to_loop(self._connection_lost, str(reason).lower())

    def _paho_publish(self, _c: paho.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        # acknowledgements reach the loop in batches: one wake-up for all that arrived since
        # the last batch was taken (deque appends and pops are thread-safe)
        self._acked.append(mid)
        if not self._acks_scheduled:
            self._acks_scheduled = True
            self._to_loop(self._take_acks)

    def _paho_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        inbound = InboundMessage(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            response_topic=getattr(props, "ResponseTopic", None),
            correlation_data=getattr(props, "CorrelationData", None),
        )
        # handed out in batches, a few per turn of the loop, so that a flood of requests
        # never holds up polls and other I/O (deque appends are thread-safe)
        self._inbound.append(inbound)
        if not self._inbound_scheduled:
            self._inbound_scheduled = True
            self._to_loop(self._hand_out)

    # -- the same events, on the loop -----------------------------------------------------------

    def _connack_arrived(self, refused: str | None) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(refused)

    def _connection_lost(self, reason: str) -> None:
        self._lost_reason = reason
        self.stats.connected = False
        self._lost.set()
        self._connack_arrived("connection closed by the broker")

    def _take_acks(self) -> None:
        self._acks_scheduled = False  # before taking: a later ack schedules another batch
        acked = self._acked
        while acked:
            self._published(acked.popleft())

    def _published(self, mid: int) -> None:
        self._inflight.discard(mid)
        self._qos0_acks.discard(mid)
        ack = self._acks.pop(mid, None)
        if ack is not None:
            try:
                ack()
            except Exception as exc:
                log.error("mqtt_ack_hook_failed", error=repr(exc), exc_info=exc)
        if not self._inflight:
            self._drained.set()

    def _hand_out(self) -> None:
        """Dispatch at most :data:`DISPATCH_BATCH` received messages, then let the loop turn
        (other I/O, timers) before the next batch."""
        inbound = self._inbound
        for _ in range(min(DISPATCH_BATCH, len(inbound))):
            self._dispatch(inbound.popleft())
        if inbound:
            assert self._loop is not None
            self._loop.call_soon(self._hand_out)
        else:
            self._inbound_scheduled = False
        if self._reading_paused and len(inbound) < INBOUND_LIMIT // 2:
            self._resume_reading()

    def _dispatch(self, message: InboundMessage) -> None:
        self.stats.received += 1
        for topic_filter, (_, _, handlers) in self._subscriptions.items():
            if not paho.topic_matches_sub(topic_filter, message.topic):
                continue
            for handler in handlers:
                try:
                    handler(message)
                except Exception as exc:
                    log.error("mqtt_handler_failed", topic=message.topic, error=repr(exc),
                              exc_info=exc)
