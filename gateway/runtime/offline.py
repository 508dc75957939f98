"""What the commands that read the configuration and the state files, without running the
gateway (``plan``, ``pins``), share: quiet logging, the configuration read once, and the
exit codes of what they cannot read (78: the configuration or a mapping, 3: a state file)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from gateway.config import Config, load_or_report
from gateway.errors import EXIT_CONFIG, EXIT_STARTUP, ConfigError, StateFileError
from gateway.support import configure_logging


def offline(path: str | Path, command: Callable[[Config], int]) -> int:
    """Run ``command`` on the configuration at ``path``; its exit code, or the one of the
    problem it ran into (printed to stderr)."""
    configure_logging("error", "console")
    config = load_or_report(path)
    if config is None:
        return EXIT_CONFIG
    try:
        return command(config)
    except StateFileError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_STARTUP
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
