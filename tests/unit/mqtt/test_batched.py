"""BatchedClient against paho's own bytes: a QoS 0 PUBLISH queued by ``publish_qos0`` is the
packet paho's ``publish`` makes, the PUBLISH packets of one write turn leave in one send, and
what the socket does not take is sent first, in order, when it is writable again."""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.mqtt.batched import BatchedClient


class Wire:
    """A socket that takes at most ``room`` bytes per send (None: everything)."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.sent: list[bytes] = []

    def send(self, data: Any) -> int:
        if self.room == 0:
            raise BlockingIOError
        chunk = bytes(data) if self.room is None else bytes(data)[:self.room]
        self.sent.append(chunk)
        return len(chunk)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:  # paho closes its socket when the client goes away
        pass

    @property
    def bytes(self) -> bytes:
        return b"".join(self.sent)


def attached(client: paho.Client, wire: Wire) -> paho.Client:
    client._sock = wire  # as paho's own connect leaves it
    client.on_socket_register_write = lambda *_a: None  # an external loop: no direct writes
    return client


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5])
@pytest.mark.parametrize(("topic", "payload", "retain"), [
    ("egauge/main/register/grid", b"-1234.5", True), ("t", b"", False),
    ("egauge/" + "x" * 200, b"1" * 300, True)])
def test_publish_qos0_writes_the_packet_paho_writes(protocol: MQTTProtocolVersion, topic: str,
                                                    payload: bytes, retain: bool) -> None:
    theirs = attached(paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol), Wire())
    theirs.publish(topic, payload, 0, retain)
    theirs.loop_write()
    ours_wire = Wire()
    ours = attached(BatchedClient(CallbackAPIVersion.VERSION2, protocol=protocol), ours_wire)
    assert isinstance(ours, BatchedClient)
    assert ours.publish_qos0(topic, payload, retain)
    ours.write()
    assert ours_wire.bytes == theirs._sock.bytes  # type: ignore[union-attr]


def test_publish_qos0_refuses_what_paho_refuses() -> None:
    client = attached(BatchedClient(CallbackAPIVersion.VERSION2), Wire())
    assert isinstance(client, BatchedClient)
    for topic in ("", "a/+/b", "a/#"):
        with pytest.raises(ValueError, match="topic"):
            client.publish_qos0(topic, b"1", False)
    assert not BatchedClient(CallbackAPIVersion.VERSION2).publish_qos0("a", b"1", False)


def test_one_turn_is_one_send_and_what_does_not_fit_goes_first_later() -> None:
    wire = Wire()
    client = attached(BatchedClient(CallbackAPIVersion.VERSION2), wire)
    assert isinstance(client, BatchedClient)
    packets = []
    for i in range(12):
        client.publish_qos0(f"egauge/m/register/r{i}", str(i).encode(), True)
        packets.append(bytes(client._out_packet[-1]["packet"]))
    client.publish("egauge/m/state", b"{}", 1, True)
    client.write()
    assert len(wire.sent) == 1, "twelve QoS 0 and one QoS 1 PUBLISH: one send"
    assert wire.bytes.startswith(b"".join(packets))

    tight = Wire(room=10)
    client = attached(BatchedClient(CallbackAPIVersion.VERSION2), tight)
    assert isinstance(client, BatchedClient)
    for i in range(5):
        client.publish_qos0(f"egauge/m/register/r{i}", b"123.25", True)
    expected = b"".join(bytes(p["packet"]) for p in client._out_packet)
    client.write()
    assert client.want_write(), "unsent bytes keep the write registered"
    tight.room = 0  # the socket is full: paho's next packet must wait behind the rest
    client.publish_qos0("egauge/m/register/late", b"1", True)
    late = bytes(client._out_packet[-1]["packet"])
    client.write()
    tight.room = None
    while client.want_write():
        client.write()
    assert tight.bytes == expected + late


def test_a_polls_values_queued_together_are_the_packets_paho_writes_one_by_one() -> None:
    values = [(f"egauge/main/register/r{i}", f"{i * 1.5}".encode()) for i in range(11)]
    theirs = attached(paho.Client(CallbackAPIVersion.VERSION2), Wire())
    for topic, payload in values:
        theirs.publish(topic, payload, 0, True)
    theirs.loop_write()
    wire = Wire()
    ours = attached(BatchedClient(CallbackAPIVersion.VERSION2), wire)
    assert isinstance(ours, BatchedClient)
    assert ours.publish_qos0_many(values, True)
    assert len(ours._out_packet) == 1
    ours.write()
    assert wire.bytes == theirs._sock.bytes  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="topic"):
        ours.publish_qos0_many([("ok", b"1"), ("bad/#", b"2")], True)
    assert not ours._out_packet, "nothing queued when one topic is refused"


def test_a_reconnect_with_values_still_queued_drops_them_and_goes_on() -> None:
    """paho's ``reconnect`` marks every QoS 0 entry still queued as lost (it sets the entry's
    ``rc``): the entries ``publish_qos0_many`` queued must take that, or the reconnect after a
    broker outage raises and ends the connection's task."""
    client = attached(BatchedClient(CallbackAPIVersion.VERSION2), Wire())
    assert isinstance(client, BatchedClient)
    assert client.publish_qos0_many([("egauge/m/register/grid", b"1"),
                                     ("egauge/m/register/solar", b"2")], True)
    assert client.publish_qos0("egauge/m/register/use", b"3", True)
    assert len(client._out_packet) == 2  # never written: the connection went first
    with socket.socket() as probe:  # a port nobody listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        client.connect("127.0.0.1", port)
    assert not client._out_packet
