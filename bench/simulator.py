"""The benchmark's meter fleet, in a process of its own.

    python bench/simulator.py --meters N --host 127.0.0.2 --port 80

Serves ``N`` simulated meters (``gateway.simulator.fleet`` on one loopback address each),
prints ``ready`` and then one ``<index> <url>`` line per meter. Commands on stdin:

- ``dump PATH``: write, per meter, the arrival times of its ``/api/register?...time=now``
  requests (the polls; history reads ``time=FROM:STEP:TO`` are not polls) since the last dump
  to PATH as JSON; then print ``dumped PATH``;
- end of input: stop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from procstat import raise_fd_limit

from gateway.simulator import SimMeter, SimServer, fleet
from gateway.support.logs import configure_logging

PASSWORD = "bench-pw"
USERNAME = "owner"


def poll_arrivals(meter: SimMeter) -> list[float]:
    """Arrival times of the ``time=now`` reads of ``/register`` since the last call."""
    times = [r.time for r in meter.recorder.records("GET", "/api/register")
             if ("time", "now") in r.query]
    meter.recorder.clear()
    return times


async def serve(args: argparse.Namespace) -> None:
    # the peer, egauge-async, parses type codes with its own enum: it knows reactive
    # power only as the spec's "var" and rejects egauge-python's "PQ"
    meters = fleet(args.meters, username=USERNAME, password=PASSWORD,
                   token_lifetime_s=3600.0, reactive_code="var")
    async with SimServer(meters, args.host, args.port, fleet_addresses=True) as server:
        lines = ["ready", *(f"{i} {server.url_for(m)}" for i, m in enumerate(meters))]
        print("\n".join(lines), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            command, _, path = line.strip().partition(" ")
            if command == "dump":
                data = json.dumps({"meters": [poll_arrivals(m) for m in meters]})
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
