"""Small JSON files in ``gateway.state_dir`` that must survive a crash intact.

A write goes to a temporary file in the same directory, is flushed and fsync'ed, and then
renamed over the old file (and the directory entry fsync'ed), so a reader finds either the
old content or the new one, never a mix. Reading a missing file gives ``None``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any, *, compact: bool = False) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically; OSError when it cannot."""
    write_text(path, dumps(data, compact=compact))


def dumps(data: Any, *, compact: bool = False) -> str:
    """The text of a state file: one key per line (files people read and edit, such as the
    pins), or ``compact`` for the files rewritten every second (the history watermarks, the
    energy counters): CPython encodes those in C, ten times faster than indented JSON."""
    if compact:
        return json.dumps(data, separators=(",", ":"), sort_keys=True)
    return json.dumps(data, indent=1, sort_keys=True)


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8), atomically; OSError when it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_directory(path.parent)


def read_json(path: Path) -> Any:
    """The JSON content of ``path``; ``None`` when there is no such file. OSError and
    ValueError (not JSON, not UTF-8) reach the caller."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
