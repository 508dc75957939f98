"""What a request handler gives back, and the error it raises for bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass


class QueryError(ValueError):
    """Bad parameters or body: answered as HTTP 200 with ``{"error": <message>}``
    unless ``status`` says otherwise."""

    def __init__(self, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP response of the simulator."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    down_after_s: float | None = None  # take the meter off the network once sent


def encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def json_reply(value: object, status: int = 200,
               headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, encode(value), headers=headers)


def error_reply(message: str, status: int = 200) -> Reply:
    return json_reply({"error": message}, status)


def status_ok() -> Reply:
    return json_reply({"status": "OK"})


class ReplyCache:
    """Replies of the current second (the meter's data change once a second)."""

    def __init__(self, limit: int = 64) -> None:
        self._limit = limit
        self._second: int | None = None
        self._items: dict[object, Reply] = {}

    def get(self, key: object) -> Reply | None:
        return self._items.get(key)

    def put(self, key: object, second: int, reply: Reply) -> None:
        if second != self._second or len(self._items) >= self._limit:
            self._items.clear()
            self._second = second
        self._items[key] = reply
