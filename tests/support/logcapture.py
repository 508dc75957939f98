"""Captured structlog events with a monotonic-free timestamp, on every structlog version the
project allows (``capture_logs(processors=...)`` exists only from structlog 25.5 on)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog
from structlog.testing import LogCapture


@contextlib.contextmanager
def capture_logs_stamped() -> Iterator[list[dict[str, Any]]]:
    """Like :func:`structlog.testing.capture_logs`, each event with ``timestamp`` (Unix
    seconds, a float) added when it was logged."""
    saved = structlog.get_config()
    capture = LogCapture()
    structlog.configure(processors=[structlog.processors.TimeStamper(fmt=None), capture],
                        cache_logger_on_first_use=False)
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)
