"""argv -> sub-command -> exit code.

Exit codes: 0 clean stop, 78 invalid configuration (EX_CONFIG), 3 start-up failure, 1 crash.
Each sub-command lives next to what it drives; this module only parses and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from gateway.errors import EXIT_OK

Handler = Callable[[argparse.Namespace], int]


def _lazy(module: str, name: str) -> Handler:
    """Import a sub-command's module only when it runs (keeps ``--help`` fast)."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        func: Handler = getattr(importlib.import_module(module), name)
        return func(args)

    return handler


def build_parser() -> argparse.ArgumentParser:
    from gateway import __version__

    parser = argparse.ArgumentParser(
        prog="egauge-gateway",
        description="Bridge eGauge energy meters to MQTT and Modbus TCP.",
    )
    parser.add_argument("--version", action="version", version=f"egauge-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    p = add("run", "run the gateway", _lazy("gateway.runtime.run", "main"))
    p.add_argument("-c", "--config", default="gateway.yaml", help="configuration file")
    # given by the supervisor of gateway.workers to each worker process it starts
    p.add_argument("--worker", default=None, metavar="J/N", help=argparse.SUPPRESS)

    p = add("check-config", "validate a configuration file", _lazy("gateway.runtime.check", "main"))
    p.add_argument("-c", "--config", default="gateway.yaml", help="configuration file")

    p = add("probe", "log in to a meter and print its identity and registers",
            _lazy("gateway.meter.probe", "main"))
    p.add_argument("url", help="the meter, e.g. https://egauge12345.local")
    p.add_argument("-u", "--username", default=None, help="user name (env EGAUGE_USERNAME)")
    p.add_argument("--password-file", default=None, help="read the password from this file")
    p.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    p.add_argument("--ca-file", default=None, help="verify TLS against this CA bundle")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    p.add_argument("--local", action="store_true", help="also print /local sensor values")

    p = add("simulate", "serve simulated eGauge meters", _lazy("gateway.simulator.cli", "main"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="first port")
    p.add_argument("--meters", type=int, default=1, help="number of meters (fleet mode)")
    p.add_argument("--fleet-addresses", action="store_true",
                   help="one 127.0.0.x address per meter on --port instead of one port each")
    p.add_argument("--username", default="owner")
    p.add_argument("--password", default="default", help="password of every simulated meter")
    p.add_argument("--token-lifetime", type=float, default=600.0)
    p.add_argument("--nonce-lifetime", type=float, default=60.0)
    p.add_argument("--control", action="store_true",
                   help="serve the /__sim__/ fault-control endpoint (also EGAUGE_SIM_CONTROL=1)")
    p.add_argument("--reactive-code", choices=["PQ", "var"], default="PQ",
                   help="type code of the Reactive register: PQ (egauge-python) or var "
                        "(the spec, egauge-async)")
    p.add_argument("--day-length", type=int, default=86400, metavar="SECONDS",
                   help="length of the simulated day (solar production, load cycle)")

    p = add("map", "Modbus register maps", _lazy("gateway.modbus.cli", "main"))
    p.add_argument("action", choices=["export", "generate"])
    p.add_argument("-c", "--config", default="gateway.yaml", help="configuration file")
    p.add_argument("--meter", default=None, help="meter id (default: the first)")
    p.add_argument("-o", "--output", default="-", help="output file (default: stdout)")

    p = add("plan", "every topic, entity and address the configuration creates",
            _lazy("gateway.runtime.plancli", "main"))
    p.add_argument("-c", "--config", default="gateway.yaml", help="configuration file")
    p.add_argument("--meter", default=None, help="only this meter")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--diff", action="store_true",
                   help="only what differs from the pins; exit 1 when anything does")

    p = add("pins", "list or release the pinned slugs and Modbus slots",
            _lazy("gateway.runtime.pincli", "main"))
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("list", help="every pinned name, its slug and Modbus slot",
                           description="every pinned name, its slug and Modbus slot")
    q.add_argument("-c", "--config", default="gateway.yaml", help="configuration file")
    q.add_argument("--meter", default=None, help="only this meter")
    q.add_argument("--json", action="store_true", help="print JSON")
    q = actions.add_parser("release", help="forget the pins of register names, on purpose",
                           description="forget the pins of register names, on purpose")
    q.add_argument("names", nargs="+", metavar="NAME", help="register names")
    q.add_argument("-c", "--config", default="gateway.yaml", help="configuration file")
    q.add_argument("--meter", required=True, help="meter id")
    q.add_argument("--only", action="append", choices=["slug", "modbus"], default=None,
                   help="only this kind of pin (default: both)")
    q.add_argument("--force", action="store_true",
                   help="even while a name is on the meter, or the meter is unreachable")

    p = add("demo", "simulated meter + broker + gateway on loopback",
            _lazy("gateway.runtime.demo", "main"))
    p.add_argument("--meters", type=int, default=1, help="number of simulated meters (1-100)")
    p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="log events at this level and above to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
