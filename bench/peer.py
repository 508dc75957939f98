"""The peer: PyPI's ``egauge-async`` client polling the fleet, in a process of its own.

    python bench/peer.py --urls FILE --out FILE [--interval 1]

Per meter one ``EgaugeJsonClient`` on its own ``httpx.AsyncClient`` (as its docs show; one
client shared by hundreds of hosts costs several times more CPU per request); per poll
``get_current_measurements()`` (rates) and ``get_current_counters()`` (cumulative values):
what the gateway gets from one request. Same schedule as the gateway (see schedule.py).
The client only speaks to port 80 (http) or 443 (https): when the fleet
listens elsewhere (the smoke run), a transport rewrites the port of each request.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from urllib.parse import urlsplit

import httpx
from egauge_async.json.client import EgaugeJsonClient
from schedule import Counters, Poll, parser, run_fleet, serve
from simulator import PASSWORD, USERNAME


class PortTransport(httpx.AsyncBaseTransport):
    """Sends every request to ``port`` instead of the URL's own (80)."""

    def __init__(self, port: int, inner: httpx.AsyncBaseTransport) -> None:
        self._port = port
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def poller(client: EgaugeJsonClient) -> Poll:
    async def poll() -> None:
        await client.get_current_measurements()
        await client.get_current_counters()

    return poll


async def run(args: argparse.Namespace, urls: list[str]) -> Counters:
    parts = [urlsplit(u) for u in urls]
    ports = {p.port or 80 for p in parts}
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for p in parts:
            transport = None if ports == {80} else PortTransport(p.port or 80,
                                                                 httpx.AsyncHTTPTransport())
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=args.interval * 0.9, transport=transport, verify=False))
            clients.append(EgaugeJsonClient(str(p.hostname), USERNAME, PASSWORD, http,
                                            use_ssl=False))
        return await run_fleet([poller(c) for c in clients], args.interval)


def main() -> int:
    return serve(parser(__doc__).parse_args(), run)


if __name__ == "__main__":
    sys.exit(main())
