"""The northbound MQTT side, the project's only paho-mqtt user: the connection, topics, Home
Assistant discovery, the output (a hub sink) and the command request binding."""

from gateway.mqtt.connection import ConnectionStats, MqttConnection, Will
from gateway.mqtt.message import InboundMessage
from gateway.mqtt.output import MqttOutput, create_output
from gateway.mqtt.requests import AuditPublisher, RequestBinding
from gateway.mqtt.topics import Topics, name_hash, slug, unique_slugs

__all__ = ["AuditPublisher", "ConnectionStats", "InboundMessage", "MqttConnection",
           "MqttOutput", "RequestBinding", "Topics", "Will", "create_output", "name_hash",
           "slug", "unique_slugs"]
