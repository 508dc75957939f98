"""Every WebAPI request a simulated meter received, for tests to assert on.

Recorded bodies never hold a secret: the router records them through the gateway's one secret
vocabulary (:func:`gateway.secret.masked_at`): secret-looking members at any depth, the whole
body sent to a secret-named path (``PUT /api/config/user/owner/hash``), JWT-shaped strings.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from gateway.simulator.tree import Json


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One request: ``path`` is the full path (``/api/register``), ``query`` the parameters
    in order (flags have the value ``""``), ``body`` the parsed JSON body (None when empty,
    the text when it is not JSON) with secret-looking members masked (:mod:`gateway.secret`),
    ``time`` the meter's clock on arrival, ``authorized`` whether it carried a valid token,
    ``status`` the HTTP status answered (0: none)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: Json
    time: float
    authorized: bool
    status: int

    @property
    def params(self) -> dict[str, str]:
        return dict(self.query)


class CallRecorder:
    """The newest ``limit`` requests and a count of all of them."""

    def __init__(self, limit: int = 10_000) -> None:
        self._records: deque[CallRecord] = deque(maxlen=limit)
        self.total = 0

    def add(self, record: CallRecord) -> None:
        self._records.append(record)
        self.total += 1

    def records(self, method: str | None = None, path: str | None = None) -> list[CallRecord]:
        return [r for r in list(self._records)
                if (method is None or r.method == method) and (path is None or r.path == path)]

    def clear(self) -> None:
        self._records.clear()
