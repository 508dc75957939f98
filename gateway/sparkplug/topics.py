"""The Sparkplug B topic namespace of one Edge Node (Sparkplug 3.0.0 §4.1).

``spBv1.0/<group_id>/<verb>/<edge_node_id>[/<device_id>]``; a primary host announces itself
on ``spBv1.0/STATE/<host_id>`` (Sparkplug 3.0) or, before 3.0, on ``STATE/<host_id>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NAMESPACE: Final = "spBv1.0"


@dataclass(frozen=True, slots=True)
class SparkplugTopics:
    """Every topic of the Edge Node ``node`` in group ``group``."""

    group: str
    node: str

    def _node(self, verb: str) -> str:
        return f"{NAMESPACE}/{self.group}/{verb}/{self.node}"

    def _device(self, verb: str, device: str) -> str:
        return f"{NAMESPACE}/{self.group}/{verb}/{self.node}/{device}"

    @property
    def nbirth(self) -> str:
        return self._node("NBIRTH")

    @property
    def ndeath(self) -> str:
        return self._node("NDEATH")

    @property
    def ndata(self) -> str:
        return self._node("NDATA")

    @property
    def ncmd(self) -> str:
        return self._node("NCMD")

    def dbirth(self, device: str) -> str:
        return self._device("DBIRTH", device)

    def ddeath(self, device: str) -> str:
        return self._device("DDEATH", device)

    def ddata(self, device: str) -> str:
        return self._device("DDATA", device)

    def dcmd(self, device: str) -> str:
        return self._device("DCMD", device)

    @property
    def dcmd_filter(self) -> str:
        """One subscription for the commands to every device of this node."""
        return self._device("DCMD", "+")

    def device_of(self, topic: str) -> str | None:
        """The device id of a DCMD topic of this node (None for any other topic)."""
        prefix = self._device("DCMD", "")
        if not topic.startswith(prefix):
            return None
        device = topic[len(prefix):]
        return device if device and "/" not in device else None


def state_topics(host_id: str) -> tuple[str, str]:
    """The primary host's STATE topic, and the one Sparkplug B before 3.0 used."""
    return f"{NAMESPACE}/STATE/{host_id}", f"STATE/{host_id}"
