"""The poll schedule shared by the floor and the peer processes: the gateway's own rules
(fixed slots ``start + phase + k * interval`` on the monotonic clock, the fleet's phases spread
over one interval, a poll that overruns skips the missed slots), one task per meter.

A process built on :func:`run_fleet` prints ``warm`` once every meter completed a poll, stops
at the end of stdin and returns its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from procstat import raise_fd_limit

Poll = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Counters:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    warm_meters: int = 0
    last_error: str = ""


async def _every(interval: float, phase: float, poll: Poll, counters: Counters,
                 fleet_size: int) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time() + phase
    warm = False
    while True:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await poll()
        except Exception as exc:
            counters.failed += 1
            counters.last_error = repr(exc)
        else:
            counters.ok += 1
            if not warm:
                warm = True
                counters.warm_meters += 1
                if counters.warm_meters == fleet_size:
                    print("warm", flush=True)
        due += interval
        late = loop.time() - due
        if late > 0:
            missed = math.ceil(late / interval)
            counters.skipped += missed
            due += missed * interval


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every fleet process takes (the ``--urls`` file, the interval, ``--out``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--urls", required=True, help="the simulator's '<index> <url>' lines")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--out", required=True)
    return parser


def serve(args: argparse.Namespace,
          run: Callable[[argparse.Namespace, list[str]], Coroutine[Any, Any, Counters]]) -> int:
    """Run ``run(args, urls)`` on a new event loop and write the counters it returns."""
    raise_fd_limit()
    write(args.out, asyncio.run(run(args, read_urls(args.urls))))
    return 0


def read_urls(path: str) -> list[str]:
    """The meters' URLs from the simulator's ``<index> <url>`` lines."""
    return [line.split()[1] for line in Path(path).read_text().splitlines() if line]


def write(path: str, counters: Counters) -> None:
    Path(path).write_text(json.dumps(asdict(counters)))


async def run_fleet(polls: Sequence[Poll], interval: float) -> Counters:
    """Run one poll loop per meter until stdin closes; return the counters."""
    counters = Counters()
    count = len(polls)
    tasks = [asyncio.create_task(_every(interval, interval * i / count, poll, counters, count),
                                 name=f"poll:{i}")
             for i, poll in enumerate(polls)]
    try:
        await asyncio.to_thread(sys.stdin.read)  # until the benchmark closes our stdin
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return counters
