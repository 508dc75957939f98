"""``egauge-gateway simulate``: serve one simulated meter or a fleet until Ctrl-C/SIGTERM.

Prints each meter's serial and URL and the shared credentials on stdout; logs events to
stderr. ``--reactive-code`` types the ``Reactive`` register ``PQ`` (default, what
egauge-python reads) or ``var`` (the spec's code, what egauge-async reads);
``--day-length`` shortens the simulated day (seconds; ``Grid`` then changes direction twice
per day). The control endpoint ``/__sim__/...`` is enabled by ``--control`` where the parser
offers it, or by the environment variable ``EGAUGE_SIM_CONTROL=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import structlog

from gateway.simulator.fleet import fleet
from gateway.simulator.meter import SimMeter
from gateway.simulator.server import SimServer
from gateway.support import configure_logging

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_STARTUP = 3


def main(args: argparse.Namespace) -> int:
    configure_logging("info", "auto")
    try:
        meters = fleet(args.meters, username=args.username, password=args.password,
                       token_lifetime_s=args.token_lifetime,
                       nonce_lifetime_s=args.nonce_lifetime,
                       reactive_code=getattr(args, "reactive_code", "PQ"),
                       day_s=getattr(args, "day_length", 86400))
    except ValueError as exc:
        log.error("sim_bad_arguments", error=str(exc))
        return EXIT_STARTUP
    control = bool(getattr(args, "control", False)) or os.environ.get("EGAUGE_SIM_CONTROL") == "1"
    server = SimServer(meters, args.host, args.port, fleet_addresses=args.fleet_addresses,
                       control=control)
    return asyncio.run(_serve(server, meters, args.username, args.password))


async def _serve(server: SimServer, meters: list[SimMeter], username: str,
                 password: str) -> int:
    try:
        await server.start()
    except OSError as exc:
        log.error("sim_start_failed", host=server.host, port=server.port, error=str(exc))
        return EXIT_STARTUP
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"eGauge simulator: {len(meters)} meter(s); user {username!r}, "
              f"password {password!r}", flush=True)
        for meter in meters:
            print(f"{meter.serial} {server.url_for(meter)}", flush=True)
        sys.stdout.flush()
        await stop.wait()
        log.info("sim_stopping", meters=len(meters))
    finally:
        await server.close()
    return EXIT_OK
