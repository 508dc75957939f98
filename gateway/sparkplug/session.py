"""The two sequence numbers of a Sparkplug Edge Node (Sparkplug 3.0.0 §6.4.1, §5.2).

``seq`` counts the node's messages within one birth: the NBIRTH carries 0, every NDATA,
DBIRTH, DDATA and DDEATH after it one more, and 255 is followed by 0; a rebirth starts again
at 0. The NDEATH (the MQTT will) carries none.

``bdSeq`` ties an NDEATH to its NBIRTH: the will registered with a CONNECT and the NBIRTH of
that MQTT session carry the same value. It is 0 the very first time and one more (mod 256)
for every new MQTT session; a connection attempt that never became a session keeps its
value. The value is written to the state directory (atomically) *before* the CONNECT that
carries it, so after any crash the restarted gateway starts with the next one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import structlog

from gateway.support import read_json, write_json

log = structlog.get_logger(__name__)

SEQ_MODULUS: Final = 256
_VERSION: Final = 1


class Seq:
    """The ``seq`` counter of one Edge Node."""

    def __init__(self) -> None:
        self._last: int | None = None

    @property
    def last(self) -> int | None:
        """The value of the latest message (None before the first birth)."""
        return self._last

    def birth(self) -> int:
        """The value of an NBIRTH: 0, and the count starts over."""
        self._last = 0
        return 0

    def next(self) -> int:
        """The value of the next message after the NBIRTH."""
        last = 0 if self._last is None else self._last
        self._last = (last + 1) % SEQ_MODULUS
        return self._last


class BdSeq:
    """The ``bdSeq`` of this Edge Node, persisted in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: int | None = None  # the last value written (or read at start)
        self._current: int | None = None
        self._used = True  # the current value belongs to a session that has started

    @property
    def current(self) -> int | None:
        """The value of the will now registered (and of this session's NBIRTH)."""
        return self._current

    def load(self) -> None:
        """Read the value of the last run; a damaged file is logged and counts as none."""
        try:
            data = read_json(self.path)
            saved = None if data is None else int(data["bdSeq"])
            if saved is not None and not 0 <= saved < SEQ_MODULUS:
                raise ValueError(f"bdSeq {saved} is not 0-255")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("sparkplug_bdseq_unreadable", path=str(self.path), error=repr(exc))
            saved = None
        self._saved = saved

    def for_connect(self) -> int:
        """The value for the next CONNECT's will: a new one after a session (saved before it
        is returned), the same one again after an attempt that did not become a session."""
        if self._current is None or self._used:
            last = self._current if self._current is not None else self._saved
            self._current = 0 if last is None else (last + 1) % SEQ_MODULUS
            self._used = False
            self._save(self._current)
        return self._current

    def session_started(self) -> None:
        """The broker accepted the CONNECT: the next connection needs a new value."""
        self._used = True

    def _save(self, value: int) -> None:
        try:
            write_json(self.path, {"version": _VERSION, "bdSeq": value})
        except OSError as exc:
            log.warning("sparkplug_bdseq_not_saved", path=str(self.path),
                        error=exc.strerror or str(exc))
            return
        self._saved = value
