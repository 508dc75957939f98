"""The northbound MQTT side, the project's only paho-mqtt user: the connection, topics, the
pinned slugs (and the register drift they reveal), Home Assistant discovery, the output (a hub
sink), the command request binding and the bridge a supervisor publishes for its workers."""

from gateway.mqtt.bridge import GatewayBridge
from gateway.mqtt.connection import RETRY_MAX_S, ConnectionStats, MqttConnection, Will
from gateway.mqtt.discovery import bridge_config, energy_slug, entity_object_id
from gateway.mqtt.identities import RegisterIdentities
from gateway.mqtt.ledger import FILE_NAME as LEDGER_FILE
from gateway.mqtt.ledger import RetainedLedger
from gateway.mqtt.message import InboundMessage
from gateway.mqtt.output import MqttOutput, create_output, topics_of
from gateway.mqtt.plan import MeterPlan, discover
from gateway.mqtt.requests import AuditPublisher, RequestBinding
from gateway.mqtt.slugs import KIND as SLUG_KIND
from gateway.mqtt.slugs import Assignment, MeterSlugs, SlugPin
from gateway.mqtt.topics import Topics, name_hash, slug, unique_slugs

__all__ = [
    "LEDGER_FILE", "RETRY_MAX_S", "SLUG_KIND", "Assignment", "AuditPublisher", "ConnectionStats",
    "GatewayBridge", "InboundMessage", "MeterPlan", "MeterSlugs", "MqttConnection", "MqttOutput",
    "RegisterIdentities", "RequestBinding", "RetainedLedger", "SlugPin", "Topics", "Will",
    "bridge_config", "create_output", "discover", "energy_slug", "entity_object_id",
    "name_hash", "slug", "topics_of", "unique_slugs",
]
