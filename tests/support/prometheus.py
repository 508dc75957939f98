"""A registry of fixed metric families (a moment of a gateway's state, or made up)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector


class Fixed(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def registry(*families: Metric) -> CollectorRegistry:
    """A registry of its own holding exactly ``families``."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Fixed(families))
    return reg
