"""The ``sparkplug:`` section of gateway.yaml: the gateway as a Sparkplug B Edge Node.

The broker (host, port, credentials, TLS, protocol, keep-alive) is the ``mqtt`` section's;
Sparkplug has its own connection to it (client id ``<mqtt client id>-spb``), whether or not
the JSON output (``mqtt.enabled``) runs. See docs/SPARKPLUG.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.config.schema import Section

KEYS: Final = ("enabled", "group_id", "edge_node_id", "primary_host_id", "history")
_RESERVED: Final = "must not contain /, +, # or control characters"


@dataclass(frozen=True, slots=True)
class SparkplugConfig:
    enabled: bool = False
    group_id: str = "egauge"
    edge_node_id: str | None = None  # None: gateway.id
    primary_host_id: str | None = None  # births wait until this host's STATE is online
    history: bool = True  # backfilled rows also as historical DDATA


def _reserved(text: str) -> bool:
    """Whether ``text`` has a character a Sparkplug id must not have: the topic characters
    / + # (Sparkplug 3.0.0 §4.1.1) or a control character (no MQTT topic text either)."""
    return any(c in "/+#" or ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _sparkplug_id(s: Section, key: str, default: str) -> str:
    text = s.string(key, default)
    return s.fail(key, _RESERVED, text, default) if _reserved(text) else text


def _optional_id(s: Section, key: str) -> str | None:
    text = s.optional_string(key)
    return s.fail(key, _RESERVED, text, None) if text is not None and _reserved(text) else text


def parse_sparkplug(s: Section | None) -> SparkplugConfig:
    """``sparkplug: {enabled, group_id, edge_node_id, primary_host_id, history}``."""
    d = SparkplugConfig()
    if s is None:
        return d
    return SparkplugConfig(
        enabled=s.boolean("enabled", d.enabled),
        group_id=_sparkplug_id(s, "group_id", d.group_id),
        edge_node_id=_optional_id(s, "edge_node_id"),
        primary_host_id=_optional_id(s, "primary_host_id"),
        history=s.boolean("history", d.history),
    )
