"""Messages that belong to one MQTT session (``publish(..., queue=False)``, used by Sparkplug)
are dropped while there is no session, never queued into the next one."""

from __future__ import annotations

from gateway.config import MqttConfig
from gateway.mqtt import MqttConnection


def test_a_session_message_is_not_queued_while_disconnected() -> None:
    conn = MqttConnection(MqttConfig(port=9), client_id="t")
    conn.publish("a/b", b"x", 0, False, queue=False)
    conn.publish("a/b", b"y", 1, False, queue=False)
    assert (conn.stats.queued, conn.stats.published) == (0, 0)
    conn.publish("a/b", b"z", 0, False)  # the default: kept for the next connection
    assert conn.stats.queued == 1
