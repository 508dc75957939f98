"""The floor: only the work no gateway can avoid per poll, in a process of its own.

    python bench/floor.py --urls FILE --port P --topic-base B --out FILE [--interval 1]

Per meter one connection pool and one digest login at start; then per poll one
authenticated GET of ``/api/register?rate&time=now&virtual=value`` (the registers and rates
the gateway reads; the gateway also asks for the stored row before the newest, which is its
own cost), ``json.loads`` of the reply, and one MQTT publish of the reply
as it came (``<base>/<meter>/state``, QoS 1, retained, like the gateway's state). Same
schedule as the gateway (see schedule.py). No checks, no conversion, no logging.

Both libraries are driven as the gateway drives them, so that the ratio measures the
gateway's own work:

- HTTP: an ``httpx.AsyncHTTPTransport`` per meter (gateway/meter/channel.py): the request
  goes to the transport, past ``httpx.AsyncClient``'s cookie, auth and redirect layers;
- MQTT (gateway/mqtt/connection.py): paho on the asyncio loop, which watches its socket and
  calls ``loop_read``/``loop_write``, ``loop_misc`` once a second; no network thread, no
  in-flight window, ``TCP_NODELAY``.

The first floor of this benchmark drove paho from its own network thread with a 256-message
in-flight window and sent its requests through ``httpx.AsyncClient``: two costs the gateway
had removed from itself, so the ratio overstated the gateway's own work (bench/RESULTS.md
compares both floors, measured side by side).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import socket
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


def poller(http: httpx.AsyncHTTPTransport, mqtt: paho.Client, url: str, token: str,
           topic: str, timeout: float) -> Poll:
    """One poll as the gateway's channel sends it: a request straight to the transport."""
    target = url + QUERY
    headers = {"Accept": "application/json", "Authorization": "Bearer " + token}
    extensions = {"timeout": httpx.Timeout(timeout, pool=None).as_dict()}
    send, publish, loads, request = http.handle_async_request, mqtt.publish, json.loads, \
        httpx.Request

    async def poll() -> None:
        response = await send(request("GET", target, headers=headers, extensions=extensions))
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        loads(body)
        publish(topic, body, 1, True)

    return poll




class LoopDriven:
    """paho on the asyncio loop, as the gateway drives it: the loop reads and writes the
    socket when it is ready, a task runs ``loop_misc`` (keep-alive) every second."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.writing: int | None = None
        client.max_inflight_messages_set(0)
        client.on_socket_open = self._opened
        client.on_socket_close = lambda _c, _u, sock: self.loop.remove_reader(sock.fileno())
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_writing
        self.misc: asyncio.Task[None] | None = None

    def _opened(self, _c: paho.Client, _u: object, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the gateway's
        self.loop.add_reader(sock.fileno(), self.client.loop_read)

    def _want_write(self, _c: paho.Client, _u: object, sock: socket.socket) -> None:
        if self.writing is None:
            self.writing = sock.fileno()
            self.loop.add_writer(self.writing, self.client.loop_write)

    def _done_writing(self, _c: paho.Client, _u: object, _sock: socket.socket) -> None:
        if self.writing is not None:
            self.loop.remove_writer(self.writing)
            self.writing = None

    async def connect(self, host: str, port: int) -> None:
        connected = asyncio.Event()
        self.client.on_connect = lambda *_a: self.loop.call_soon(connected.set)
        self.client.connect(host, port)  # a loopback connect: no worker thread needed
        await connected.wait()
        self.misc = asyncio.create_task(self._keep_alive(), name="mqtt-misc")

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.client.loop_misc()

    async def close(self) -> None:
        if self.misc is not None:
            self.misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.misc
        self.client.disconnect()


async def run(args: argparse.Namespace, urls: list[str]) -> Counters:
    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{time.time_ns()}")
    driven = LoopDriven(mqtt)
    await driven.connect(args.host, args.port)
    timeout = args.interval * 0.9
    topics = [f"{args.topic_base}/m{i:04d}/state" for i in range(len(urls))]
    async with contextlib.AsyncExitStack() as stack:
        gate = asyncio.Semaphore(20)
        logins = [await stack.enter_async_context(httpx.AsyncClient(timeout=timeout,
                                                                    verify=False))
                  for _ in urls]
        tokens = await asyncio.gather(*(login(c, u, gate) for c, u in zip(logins, urls,
                                                                            strict=True)))
        for client in logins:
            await client.aclose()
        transports = [await stack.enter_async_context(httpx.AsyncHTTPTransport(
            verify=False, limits=httpx.Limits(max_connections=4, max_keepalive_connections=2)))
            for _ in urls]
        polls = [poller(h, mqtt, u, t, topic, timeout) for h, u, t, topic
                 in zip(transports, urls, tokens, topics, strict=True)]
        counters = await run_fleet(polls, args.interval)
    await driven.close()
    return counters


def main() -> int:
    options = parser(__doc__)
    options.add_argument("--host", default="127.0.0.1")
    options.add_argument("--port", type=int, required=True, help="the broker's port")
    options.add_argument("--topic-base", required=True)
    return serve(options.parse_args(), run)


if __name__ == "__main__":
    sys.exit(main())
