"""The floor: only the work no gateway can avoid per poll, in a process of its own.

    python bench/floor.py --urls FILE --port P --topic-base B --out FILE [--interval 1]

Per meter: one ``httpx.AsyncClient`` (as the gateway has: one client's connection pool
serving hundreds of hosts costs several times more CPU per request) and one digest login at
start; then per poll one authenticated httpx GET of
``/api/register?rate&time=now&virtual=value`` (the gateway's query, so both read the same
registers), ``json.loads`` of the reply, and one MQTT publish of the reply as it came
(``<base>/<meter>/state``, QoS 1, retained, like the gateway's state). Same schedule as the
gateway (see schedule.py). No checks, no conversion, no logging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from schedule import Counters, Poll, parser, run_fleet, serve
from simulator import PASSWORD, USERNAME

from gateway.meter.auth import digest_hash

QUERY = "/api/register?rate&time=now&virtual=value"


async def login(http: httpx.AsyncClient, url: str, gate: asyncio.Semaphore) -> str:
    """The JWT of one meter (the eGauge digest login; a few at a time, tried thrice)."""
    async with gate:
        for attempt in range(3):
            try:
                return await _login(http, url)
            except httpx.TransportError:
                if attempt == 2:
                    raise
    raise AssertionError("unreachable")


async def _login(http: httpx.AsyncClient, url: str) -> str:
    challenge = (await http.get(url + "/api/auth/unauthorized")).json()
    realm, nonce, cnonce = challenge["rlm"], challenge["nnc"], secrets.token_hex(16)
    body = {"rlm": realm, "usr": USERNAME, "nnc": nonce, "cnnc": cnonce,
            "hash": digest_hash(USERNAME, realm, PASSWORD, nonce, cnonce)}
    reply = (await http.post(url + "/api/auth/login", json=body)).json()
    return str(reply["jwt"])


def poller(http: httpx.AsyncClient, mqtt: paho.Client, url: str, token: str,
           topic: str) -> Poll:
    target = url + QUERY
    headers = {"Authorization": "Bearer " + token}
    get, publish, loads = http.get, mqtt.publish, json.loads

    async def poll() -> None:
        response = await get(target, headers=headers)
        loads(response.content)
        publish(topic, response.content, 1, True)

    return poll


async def run(args: argparse.Namespace, urls: list[str]) -> Counters:
    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{time.time_ns()}")
    mqtt.max_inflight_messages_set(256)
    mqtt.connect(args.host, args.port)
    mqtt.loop_start()
    async with contextlib.AsyncExitStack() as stack:
        timeout = args.interval * 0.9
        clients = [await stack.enter_async_context(httpx.AsyncClient(timeout=timeout,
                                                                     verify=False))
                   for _ in urls]
        gate = asyncio.Semaphore(20)
        tokens = await asyncio.gather(*(login(c, u, gate) for c, u in zip(clients, urls,
                                                                            strict=True)))
        polls = [poller(c, mqtt, u, t, f"{args.topic_base}/m{i:04d}/state")
                 for i, (c, u, t) in enumerate(zip(clients, urls, tokens, strict=True))]
        counters = await run_fleet(polls, args.interval)
    mqtt.disconnect()
    mqtt.loop_stop()
    return counters


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--host", default="127.0.0.1")
    options.add_argument("--port", type=int, required=True, help="the broker's port")
    options.add_argument("--topic-base", required=True)
    return serve(options.parse_args(), run)


if __name__ == "__main__":
    sys.exit(main())
