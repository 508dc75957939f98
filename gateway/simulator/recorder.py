"""Every WebAPI request a simulated meter received, for tests to assert on.

Recorded bodies never hold a secret: :func:`masked` replaces with ``"***"`` the values of
members whose name contains a word of :data:`SECRET_WORDS` (``pwd``, ``hash``,
``password``, ...), the whole body sent to a path whose last part is such a word
(``PUT /api/config/user/owner/hash``), and any JWT-shaped string.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from gateway.simulator.tree import Json

MASK = "***"
SECRET_WORDS = frozenset({"pwd", "hash", "password", "passwd", "mailpass", "secret", "token",
                          "jwt", "certificate", "authorization", "credential"})
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def _secret_name(name: str) -> bool:
    low = name.lower()
    return any(word in low for word in SECRET_WORDS)


def _mask_value(value: Json) -> Json:
    if isinstance(value, dict):
        return {k: MASK if _secret_name(str(k)) else _mask_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_value(v) for v in value]
    if isinstance(value, str) and _JWT.match(value):
        return MASK
    return value


def masked(path: str, body: Json, opaque: bool = False) -> Json:
    """``body`` of a request to ``path`` as it may be recorded (``opaque``: mask it all)."""
    if body is None:
        return None
    if opaque or _secret_name(path.rstrip("/").rpartition("/")[2]):
        return MASK
    return _mask_value(body)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One request: ``path`` is the full path (``/api/register``), ``query`` the parameters
    in order (flags have the value ``""``), ``body`` the parsed JSON body (None when empty,
    the text when it is not JSON), ``time`` the meter's clock on arrival, ``authorized``
    whether it carried a valid token, ``status`` the HTTP status answered (0: none)."""

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
