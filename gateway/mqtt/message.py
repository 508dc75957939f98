"""The project's own MQTT message type: what a subscription handler receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One received message. ``response_topic`` and ``correlation_data`` come with MQTT 5
    requests that want their answer elsewhere (``None`` otherwise)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None


Handler = Callable[[InboundMessage], None]
"""A subscription handler; runs on the asyncio loop and must not block."""
