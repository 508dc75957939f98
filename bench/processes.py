"""The benchmark's child processes: started, read line by line, stopped."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


class Child:
    """A child process whose stdout lines can be waited for (``expect``); it runs in ``cwd``
    (``python -m gateway`` there imports that directory's gateway)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, *,
                 env: dict[str, str] | None = None, stdin: bool = True,
                 cwd: Path = REPO) -> None:
        self.name = name
        self.argv = argv
        self.log = log_dir / f"{name}.log"
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self.log.open("wb"), text=True, bufsize=1,
            env={**os.environ, **(env or {}),
                 "PYTHONPATH": os.pathsep.join(filter(None, (str(BENCH),
                                                             os.environ.get("PYTHONPATH"))))},
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, word: str, timeout: float) -> list[str]:
        """The lines up to and including the first that starts with ``word``."""
        seen: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise self._failed(f"no {word!r} within {timeout:g} s") from None
            if line is None:
                raise self._failed(f"ended before {word!r}")
            seen.append(line)
            if line.startswith(word):
                return seen

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close_input(self, timeout: float = 30.0) -> int:
        """End its stdin (the helpers stop then) and wait for it to exit."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self._wait(timeout)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; SIGKILL after ``timeout`` (then the exit code is -9)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self._wait(timeout)

    def _wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def _failed(self, what: str) -> RuntimeError:
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return RuntimeError(f"{self.name}: {what} (exit {self.proc.poll()}); log {self.log}:\n"
                            f"{tail}")


def python(script: str, *args: str) -> list[str]:
    """``python bench/<script> args...`` with this interpreter."""
    return [sys.executable, str(BENCH / script), *args]
