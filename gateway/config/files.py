"""Reading the files a configuration names (the YAML file itself, password files) without
ever waiting on them: a FIFO's ``open`` waits for a writer, and a device can be read
forever, so anything but a regular file is refused with a clear reason before it is read."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

NOT_REGULAR = "not a regular file (a FIFO, a device or a directory)"


def read_regular(path: str | Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file at ``path``. :class:`OSError` when it
    cannot be opened or read, or is not a regular file (its ``strerror`` says which);
    :class:`ValueError` for a NUL in the name."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO: no wait
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, NOT_REGULAR, str(path))
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
