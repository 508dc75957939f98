"""The router's limits: request size and nesting, and the ones the top-level ``commands:``
section configures (queue, rate, dedup window; the MQTT inbox is the transport's)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import CommandLimits


@dataclass(frozen=True, slots=True)
class Limits:
    """Router limits that are not per-meter configuration (the configurable ones come from
    the top-level ``commands:`` section, :meth:`of`)."""

    max_payload: int = 16 * 1024  # bytes
    max_depth: int = 32  # nesting of JSON arrays/objects
    queue: int = 8  # commands per meter admitted and not yet finished
    rate: int = 30  # commands per meter ...
    rate_window_s: float = 60.0  # ... within this many seconds
    dedup_window_s: float = 600.0  # how long a transaction's answer is remembered
    dedup_size: int = 1024  # how many answers are remembered at most

    @classmethod
    def of(cls, config: CommandLimits) -> Limits:
        """The limits that ``commands:`` configures; the rest at their defaults."""
        return cls(queue=config.queue, rate=config.rate, rate_window_s=config.rate_window_s,
                   dedup_window_s=config.dedup_window_s)
