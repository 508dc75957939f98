"""Structured logging: structlog events and stdlib records through one renderer.

:func:`configure_logging` sets up structlog on top of the stdlib ``logging`` module so that the
gateway's own events (``structlog.get_logger(__name__)``) and the records of httpx, paho-mqtt and
pymodbus (kept at WARNING and above) come out of the same handler: JSON lines, or a readable
console format on a terminal. Every event carries an ISO-8601 UTC ``timestamp``, ``level`` and
``logger``. :func:`redact` runs last before rendering, so no sink sees a password or a token.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import Processor

from gateway.errors import ConfigError
from gateway.secret import mask_text, masked_member

LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                 "error": logging.ERROR}
FORMATS: Final = ("auto", "console", "json")
THIRD_PARTY: Final = ("httpx", "httpcore", "paho", "pymodbus", "asyncio")


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs on the root logger (replaced, not added,
    when it runs again)."""


def configure_logging(level: str = "info", fmt: str = "auto",
                      stream: TextIO | None = None) -> logging.Handler:
    """Route structlog and stdlib logging through one renderer writing to ``stream``
    (default: stderr). ``fmt`` is ``json``, ``console`` or ``auto`` (console on a TTY, JSON
    otherwise). Returns the handler installed on the root logger."""
    problems = []
    if level not in LEVELS:
        problems.append(f"log_level: must be debug, info, warning or error (got {level!r})")
    if fmt not in FORMATS:
        problems.append(f"log_format: must be auto, console or json (got {fmt!r})")
    if problems:
        raise ConfigError(problems)
    out = sys.stderr if stream is None else stream
    console = fmt == "console" or (fmt == "auto" and _isatty(out))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=_isatty(out),
                                      exception_formatter=structlog.dev.plain_traceback)
        if console else structlog.processors.JSONRenderer())
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, LEVELS[level]))
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


def redact(_logger: object, _method: str, event_dict: MutableMapping[str, Any]
           ) -> MutableMapping[str, Any]:
    """A structlog processor: values of secret-named keys (:func:`gateway.secret.is_secret_name`,
    at any depth) and every :class:`~gateway.secret.Secret` become ``***``; JWTs and
    ``Bearer`` tokens inside strings are masked. Numbers and booleans under secret-named keys
    (``token_lifetime_s=600``) stay: they are the gateway's own counters, not secrets."""
    for key, value in event_dict.items():
        event_dict[key] = masked_member(key, value, keep_scalars=True)
    return event_dict


def mask_tokens(text: str) -> str:
    """``text`` with JWT-looking tokens and ``Bearer`` credentials replaced by ``***``
    (:func:`gateway.secret.mask_text`)."""
    return mask_text(text)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
