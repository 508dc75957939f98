"""What /proc says about a process: CPU seconds (user + system, all threads) and memory."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (every thread) from /proc/<pid>/stat, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every process below it (a supervisor and its workers)."""
    total = 0.0
    for p in tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:  # ended meanwhile
            continue
    return total


def tree_status_mb(pid: int, key: str) -> float:
    """The sum of a ``kB`` line of /proc/<pid>/status over ``pid`` and its descendants (the
    sum of each process's peak for ``VmHWM``: an upper bound of the tree's peak)."""
    total = 0.0
    for p in tree(pid):
        try:
            total += status_mb(p, key)
        except (OSError, KeyError):
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every CPU, since boot), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def status_mb(pid: int, key: str) -> float:
    """A ``kB`` line of /proc/<pid>/status (``VmHWM``: peak RSS, ``VmRSS``: RSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def raise_fd_limit() -> None:
    """Open files up to the hard limit: a fleet needs a socket per meter and connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(*argv: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine() -> dict[str, str]:
    """The machine a benchmark ran on, for the results page."""
    from importlib.metadata import version

    mem_kb = int(_first("/proc/meminfo", "MemTotal").split()[0])
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "mosquitto": _version("mosquitto", "-h").replace("mosquitto version ", ""),
        "packages": ", ".join(
            f"{p} {version(p)}" for p in ("httpx", "paho-mqtt", "structlog", "egauge-async")
        ),
    }
