"""Sparkplug B output: the gateway as one Eclipse Sparkplug 3.0.0 Edge Node.

The user documentation is docs/SPARKPLUG.md. The modules:

- :mod:`~gateway.sparkplug.output`: the Edge Node as a hub sink and service on its own MQTT
  connection (the project's :class:`~gateway.mqtt.connection.MqttConnection`), and what hosts
  send; :mod:`~gateway.sparkplug.node`: its session (births, will, sending);
- :mod:`~gateway.sparkplug.device`, :mod:`~gateway.sparkplug.metrics`: what each meter's
  device and the node report;
- :mod:`~gateway.sparkplug.session`, :mod:`~gateway.sparkplug.aliases`: ``seq``, ``bdSeq``
  and the pinned aliases and slugs;
- :mod:`~gateway.sparkplug.commands`, :mod:`~gateway.sparkplug.host`: NCMD/DCMD writes and the
  primary host's STATE;
- :mod:`~gateway.sparkplug.payload`: the payload types and their protobuf encoding, the
  project's only protobuf user, over ``sparkplug_b.proto`` and its gencode
  ``sparkplug_b_pb2.py`` / ``.pyi``.

The gencode is made by the protoc of ``grpcio-tools`` 1.74 (the ``proto`` extra; the command
is at the top of sparkplug_b.proto). Its version, 6.31.1, is the oldest protobuf runtime that
loads it, and newer runtimes accept older gencode, so the runtime dependency is
``protobuf>=6.31.1,<8``. Regenerate with the same protoc to keep that range.
"""

from __future__ import annotations

from gateway.config import Config, shard
from gateway.mqtt import MqttConnection
from gateway.sparkplug.device import SlugOf
from gateway.sparkplug.output import SparkplugOutput, Submit, default_slug
from gateway.sparkplug.plan import book_of, planned_metrics, topics_of

__all__ = ["SlugOf", "SparkplugOutput", "Submit", "book_of", "create_output",
           "planned_metrics", "topics_of"]


def create_output(config: Config, *, slug_of: SlugOf | None = None,
                  submit: Submit | None = None) -> SparkplugOutput:
    """The Sparkplug output of ``config`` on its own connection to the ``mqtt`` section's
    broker, client id ``<mqtt client id>-spb``. ``slug_of(meter, register)`` names the
    register metrics (default: the MQTT topics' slug of the register name); ``submit``
    carries DCMD writes to the command router (None: writes are ignored)."""
    mqtt = config.mqtt
    client_id = shard.suffixed(config, mqtt.client_id or f"egauge-gateway-{config.gateway.id}")
    connection = MqttConnection(mqtt, client_id=f"{client_id}-spb")
    return SparkplugOutput(config, connection, slug_of=slug_of or default_slug, submit=submit)
