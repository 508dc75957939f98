"""The benchmark's meter fleet, in a process of its own.

    python bench/simulator.py --meters N --host 127.0.0.2 --port 80

Serves ``N`` simulated meters (``gateway.simulator.fleet`` on one loopback address each),
prints ``ready`` and then one ``<index> <url>`` line per meter. Commands on stdin:

- ``dump PATH``: write, per meter, the arrival times of its polls (``/api/register?...`` with
  ``time=now`` or ``time=now-1:1:now``; history reads ``time=FROM:STEP:TO`` are not polls)
  since the last dump to PATH as JSON (``meters``), and the time and kind of every other
  request (``others``: logins, history reads, ...); then print ``dumped PATH``;
- end of input: stop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from pathlib import Path

from procstat import raise_fd_limit

from gateway.simulator import SimMeter, SimServer, fleet
from gateway.support.logs import configure_logging

PASSWORD = "bench-pw"
USERNAME = "owner"


# the polls: the gateway's (the newest row and the one before), the floor's and the peer's
POLL_TIMES = frozenset({"now", "now-1:1:now"})


def poll_arrivals(meter: SimMeter, others: list[tuple[float, str]]) -> list[float]:
    """Arrival times of the polls (``time=now`` reads of ``/register``) since the last call;
    the other requests go to ``others`` as (time, ``"GET /api/register?time=FROM:STEP:TO"``)."""
    times = []
    for r in meter.recorder.records():
        when = dict(r.query).get("time")
        if r.method == "GET" and r.path == "/api/register" and when in POLL_TIMES:
            times.append(r.time)
        else:
            kind = "" if when is None else "?time=" + ("FROM:STEP:TO" if ":" in when else when)
            others.append((r.time, f"{r.method} {r.path}{kind}"))
    meter.recorder.clear()
    return times


def settle_heap() -> None:
    """Keep the collector's full passes out of the measured windows. The fleet's objects and
    the request records of a window (some 200,000 objects at 500 meters) made each full
    collection pause every meter for 80-135 ms, about every 12 s (measured with
    ``gc.callbacks``): a tail of the subject's latency that no subject causes. So what lives
    is frozen at start, and full passes wait for 1000 second-generation passes (minutes)
    instead of 10. (Not at each dump: a collection there paused the polls at the window's
    edges.)"""
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(10_000, middle, 1000)  # the young ones as the gateway does (settle_heap)


async def serve(args: argparse.Namespace) -> None:
    # the peer, egauge-async, parses type codes with its own enum: it knows reactive
    # power only as the spec's "var" and rejects egauge-python's "PQ"
    meters = fleet(args.meters, username=USERNAME, password=PASSWORD,
                   token_lifetime_s=3600.0, reactive_code="var")
    async with SimServer(meters, args.host, args.port, fleet_addresses=True) as server:
        settle_heap()
        lines = ["ready", *(f"{i} {server.url_for(m)}" for i, m in enumerate(meters))]
        print("\n".join(lines), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            command, _, path = line.strip().partition(" ")
            if command == "dump":
                others: list[tuple[float, str]] = []
                polls = [poll_arrivals(m, others) for m in meters]
                data = json.dumps({"meters": polls, "others": others})
                await asyncio.to_thread(Path(path).write_text, data)
                print(f"dumped {path}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=80)
    args = parser.parse_args()
    configure_logging("warning", "json")
    raise_fd_limit()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
