"""Fault switches of one simulated meter.

Counters apply to the next N requests (any path but the simulator's own control endpoint):
``hang`` accepts the request and never answers, ``reset`` closes the connection without an
answer, ``http_500`` answers HTTP 500 with a plain-text body (``http_500_probability`` does
so at random), ``broken_json`` cuts a JSON answer in half. ``latency_s`` delays every
answer. A request that meets ``hang``, ``reset`` or ``http_500`` has no effect on the meter.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

_COUNTERS = ("hang", "reset", "http_500", "broken_json")


@dataclass(slots=True)
class Faults:
    latency_s: float = 0.0
    http_500: int = 0
    http_500_probability: float = 0.0
    broken_json: int = 0
    hang: int = 0
    reset: int = 0

    def take(self, name: str) -> bool:
        """Use up one count of the counter ``name``; False when it is zero."""
        left: int = getattr(self, name)
        if left <= 0:
            return False
        setattr(self, name, left - 1)
        return True

    def fails_500(self, rng: random.Random) -> bool:
        return self.take("http_500") or (
            self.http_500_probability > 0 and rng.random() < self.http_500_probability)

    def update(self, changes: Mapping[str, object]) -> None:
        """Set several switches at once; ValueError (and no change) on a bad one."""
        known = {f.name for f in fields(self)}
        staged: dict[str, float | int] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"fault {key!r} needs a non-negative number")
            if key in _COUNTERS and not isinstance(value, int):
                raise ValueError(f"fault {key!r} needs a whole number")
            if key == "http_500_probability" and value > 1:
                raise ValueError("http_500_probability must be at most 1")
            staged[key] = value
        for key, value in staged.items():
            setattr(self, key, value)

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
