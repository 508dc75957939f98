"""paho's client with the PUBLISH packets of one write turn sent in one ``send``.

paho writes every queued packet with a ``send`` of its own. With ``TCP_NODELAY`` (which the
connection sets, so that no message waits for a delayed ACK) each of them is a TCP segment:
a poll that publishes a state and eleven register values made twelve system calls, twelve
segments and twelve wake-ups of the broker. :class:`BatchedClient` collects the PUBLISH
packets that one ``loop_write`` writes and sends them together, then any other packet
(PUBACK, PINGREQ, SUBSCRIBE, DISCONNECT) as paho would, in order.

What the socket does not take at once is kept and sent first when it is writable again
(paho's own packets wait meanwhile: its ``send`` reports the socket full), so the byte stream
is exactly what paho would have written.

:meth:`BatchedClient.publish_qos0` queues a QoS 0 PUBLISH without the objects paho's own
``publish`` makes for every message (a message info with a lock and a condition, a message
id, debug formatting): the packet is the same bytes, in the same queue, so it keeps its
place among paho's packets; :meth:`BatchedClient.publish_qos0_many` queues the register values
of one poll as one entry. paho's ``publish`` remains for everything else.

This relies on paho 2.x's ``_sock_send``, ``_out_packet`` and
``_call_socket_register_write``; ``pyproject.toml`` pins paho-mqtt below 3.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

_PUBLISH = 0x30
_MAX_REMAINING = 268_435_455  # what the remaining-length field can say


class _Written:
    """The message info of the packets :meth:`BatchedClient.publish_qos0_many` queues as one
    entry: nobody waits on them. paho marks it published once the entry was written, or sets
    its ``rc`` when the connection went before (``reconnect``, for every QoS 0 entry still
    queued), so it is one object per entry with that attribute."""

    __slots__ = ("rc",)

    def __init__(self) -> None:
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS

    def _set_as_published(self) -> None:
        pass



def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


class BatchedClient(paho.Client):
    """A paho client whose ``write`` sends the PUBLISH packets of one turn in one go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch: list[bytes | bytearray] | None = None
        self._unsent = bytearray()
        self._v5 = kwargs.get("protocol") == MQTTProtocolVersion.MQTTv5

    def publish_qos0(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Queue a QoS 0 PUBLISH as paho would; False when there is no connection. A topic or
        payload paho would refuse raises :class:`ValueError` as its ``publish`` does."""
        return self.publish_qos0_many(((topic, payload),), retain)

    def publish_qos0_many(self, messages: Iterable[tuple[str, bytes]], retain: bool) -> bool:
        """Queue several QoS 0 PUBLISH packets as one entry of paho's queue (they are written
        together anyway); False when there is no connection. :class:`ValueError` for a topic
        or payload paho would refuse, before anything is queued."""
        if self._sock is None:
            return False
        head = _PUBLISH | (1 if retain else 0)
        extra = 1 if self._v5 else 0
        packet = bytearray()
        for topic, payload in messages:
            name = topic.encode("utf-8")
            if not name or b"+" in name or b"#" in name or len(name) > 65535:
                raise ValueError("Publish topic cannot contain wildcards or be empty or too "
                                 "long.")
            length = 2 + len(name) + len(payload) + extra
            if length > _MAX_REMAINING:
                raise ValueError("Payload too large.")
            packet.append(head)
            packet += _remaining_length(length)
            packet += len(name).to_bytes(2, "big")
            packet += name
            if extra:
                packet.append(0)  # no properties
            packet += payload
        if packet:
            self._out_packet.append({"command": _PUBLISH, "mid": 0, "qos": 0, "pos": 0,
                                     "to_process": len(packet), "packet": packet,
                                     "info": _Written()})  # type: ignore[typeddict-item]
            self._call_socket_register_write()
        return True

    def write(self) -> MQTTErrorCode:
        """``loop_write``, batched: call this when the socket is writable."""
        if self._unsent and not self._flush():
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        self._batch = []
        try:
            rc = self.loop_write()
        finally:
            batch, self._batch = self._batch, None
        if batch:
            self._unsent += b"".join(batch)
            self._flush()
        return rc

    def want_write(self) -> bool:
        return super().want_write() or bool(self._unsent)

    def forget_unsent(self) -> None:
        """The socket closed: what it did not take is lost with it (as paho's own would be)."""
        self._unsent.clear()

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._unsent:  # the earlier batch goes first: paho keeps this packet for later
            raise BlockingIOError
        batch = self._batch
        if batch is not None and buf and buf[0] & 0xF0 == _PUBLISH:
            batch.append(buf)  # a slice of paho's packet, its own copy
            return len(buf)
        if batch:  # another packet: what is batched goes before it
            self._unsent += b"".join(batch)
            batch.clear()
            if not self._flush():
                raise BlockingIOError
        return super()._sock_send(buf)

    def _flush(self) -> bool:
        """Send what is kept; True when all of it went."""
        sock = self._sock
        if sock is None:
            self._unsent.clear()
            return True
        try:
            sent = sock.send(self._unsent)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            sent = 0
        except OSError:  # the connection broke: paho notices it on its next read or write
            self._unsent.clear()
            return True
        del self._unsent[:sent]
        if self._unsent:
            self._call_socket_register_write()
            return False
        return True
