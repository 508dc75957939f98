"""Abuse of the HTTP server, against both of its users: the gateway's endpoint (a WebServer
answering like /healthz and /metrics) and the meter simulator (a SimServer). Each server runs
on a thread of its own; the abuse comes from the test's thread over raw sockets, while a
well-behaved client on a third thread keeps asking and must get every answer. Volumes are
stated in each test (and in docs/RELIABILITY.md)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.simulator import SimMeter, ThreadedSimServer
from gateway.support import HttpLimits, HttpStats
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME, digest_login_body
from tests.support.waiting import wait_until
from tests.support.web import (
    ThreadedWebServer,
    endpoint_like,
    exchange,
    good_client,
    read_to_eof,
    responses,
)

pytestmark = pytest.mark.integration

LIMITS = HttpLimits(header_timeout_s=1.0, request_timeout_s=2.0, idle_timeout_s=10.0)
READ_CHUNK = 256 * 1024  # asyncio reads at most this much at once


@dataclass
class Target:
    name: str
    port: int
    stats: HttpStats
    held_bytes: Callable[[], int]
    good_url: str
    good_status: int
    big_request: bytes  # a request whose answer is a few KiB
    statuses: frozenset[int]  # what any input may be answered with


def login_token(url: str) -> str:
    with httpx.Client(base_url=url + "/api") as client:
        challenge = client.get("/auth/unauthorized").json()
        body = digest_login_body(challenge, SIM_USERNAME, SIM_PASSWORD)
        token: str = client.post("/auth/login", json=body).json()["jwt"]
    return token


@pytest.fixture(params=["endpoint", "simulator"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    errors = frozenset({100, 400, 404, 405, 408, 413, 431, 501, 505})
    if request.param == "endpoint":
        with ThreadedWebServer(endpoint_like, LIMITS) as web:
            yield Target("endpoint", web.port, web.stats, web.server.held_bytes,
                         web.url("/healthz"), 200,
                         b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", errors | {200})
        return
    meter = SimMeter(username=SIM_USERNAME, password=SIM_PASSWORD)
    with ThreadedSimServer([meter], limits=LIMITS) as sim:
        url = sim.url_for(meter)
        big = (b"GET /api/register?rate&time=now-59:1:now HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Bearer %s\r\n\r\n" % login_token(url).encode())
        port = urlsplit(url).port
        assert port is not None
        yield Target("simulator", port, sim.server.stats, sim.server.held_bytes,
                     url + "/api/auth/unauthorized", 401, big, errors | {200, 401})


def release_all(target: Target) -> None:
    """Wait until the abusive connections are gone (the good client may keep one)."""
    wait_until(lambda: target.stats.connections <= 1, timeout=30,
               what="the server to let go of the abusive connections")


def statuses(raw: bytes) -> list[int]:
    return [r.status for r in responses(raw)]


# -- random and mutated bytes -------------------------------------------------------------

TEMPLATE = (b"POST /healthz?reg=3+5 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
TOKENS = [b"\r\n", b"\r\n\r\n", b":", b" ", b"-", b"0", b"9", b"F", b"\x00", b"\xff", b"\n",
          b"chunked", b"Content-Length: ", b"Transfer-Encoding: ", b"HTTP/1.1", b"GET / ",
          b"Expect: 100-continue\r\n", b"\xc2\xb2", b"FFFFFFFFFFFFFFFFFFFFFFFF"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(TEMPLATE * draw(st.integers(1, 3)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        token = draw(st.sampled_from(TOKENS))
        if kind == "insert":
            data[at:at] = token
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            data[at:at + len(token)] = token
    return bytes(data)


def test_random_and_mutated_bytes_get_an_answer_and_a_close(target: Target) -> None:
    """300 inputs per server: up to 4 KiB of random bytes, or a chunked POST (1-3 times over)
    with 1-8 random insertions, deletions and replacements of HTTP tokens."""
    with good_client(target.good_url, target.good_status) as good:

        @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
        @given(st.one_of(st.binary(max_size=4096), mutated()))
        def answered(data: bytes) -> None:
            raw = exchange(target.port, data)  # TimeoutError if the server keeps it open
            assert raw == b"" or raw.startswith(b"HTTP/1.1 ")
            got = statuses(raw)
            assert set(got) <= target.statuses, raw[:200]

        answered()
        good.answered(3)
    release_all(target)


# -- slowloris ----------------------------------------------------------------------------

def test_slowloris_gets_408_however_the_bytes_trickle(target: Target) -> None:
    """50 connections each send a request line, then one header byte per connection every
    50 ms (round robin) for as long as the server keeps them open."""
    count = 50
    with ExitStack() as stack, good_client(target.good_url, target.good_status) as good:
        socks = [stack.enter_context(socket.create_connection(("127.0.0.1", target.port)))
                 for _ in range(count)]
        received = {s: bytearray() for s in socks}
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            s.setblocking(False)
        open_socks = set(socks)
        deadline = time.monotonic() + 60
        rounds = 0
        while open_socks and time.monotonic() < deadline:
            for s in list(open_socks):
                try:
                    s.send(b"a")
                    chunk = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    chunk = b""
                if chunk:
                    received[s] += chunk
                else:
                    open_socks.discard(s)
            rounds += 1
            if rounds % 10 == 0:
                good.answered(1)
            time.sleep(0.05)  # the attacker's pace, not a wait for the server
        assert not open_socks, f"{len(open_socks)} trickling connections still open"
        assert [statuses(bytes(r)) for r in received.values()] == [[408]] * count
    assert target.stats.timeouts["header"] >= count
    release_all(target)


# -- many connections ---------------------------------------------------------------------

def test_500_connections_evict_the_waiting_ones(target: Target) -> None:
    """500 connections opened one after the other and held: 250 silent, 250 with half a
    request head; the limit is 64 (the head deadline, 1 s, closes some of them first)."""
    with ExitStack() as stack, good_client(target.good_url, target.good_status) as good:
        for i in range(500):
            s = stack.enter_context(socket.create_connection(("127.0.0.1", target.port),
                                                             timeout=10))
            if i % 2:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: ")
        good.answered(5)
        assert target.stats.connections <= LIMITS.max_connections
    stats = target.stats
    assert stats.refused == 0  # the waiting ones made room for every newcomer ...
    assert stats.evicted > 0
    closed = stats.evicted + stats.timeouts["header"] + stats.timeouts["idle"]
    assert closed >= 500 - LIMITS.max_connections  # ... or their deadlines had passed
    release_all(target)


# -- huge heads and bodies ----------------------------------------------------------------

HUGE_HEADS = [
    ("one 1 MiB field", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20)
     + b"\r\n\r\n"),
    ("10000 fields", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: v\r\n" % i for i in range(10_000)) + b"\r\n"),
    ("a 1 MiB request line", b"GET /" + b"p" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
]


@pytest.mark.parametrize("wire", [w for _, w in HUGE_HEADS], ids=[n for n, _ in HUGE_HEADS])
def test_huge_heads_get_431(target: Target, wire: bytes) -> None:
    """Ten connections per case, each sending the whole head."""
    with good_client(target.good_url, target.good_status):
        assert [statuses(exchange(target.port, wire)) for _ in range(10)] == [[431]] * 10
    assert target.stats.rejected[431] == 10
    release_all(target)


def chunks(total: int, size: int = 65536) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (size, b"z" * size) for _ in range(total // size))


HUGE_BODIES = [
    ("10 GiB declared", b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
     % (10 << 30)),
    ("8 MiB sent", b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
     % (8 << 20) + b"z" * (8 << 20)),
    ("8 MiB chunked", b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + chunks(8 << 20)),
]


@pytest.mark.parametrize("wire", [w for _, w in HUGE_BODIES], ids=[n for n, _ in HUGE_BODIES])
def test_huge_bodies_get_413(target: Target, wire: bytes) -> None:
    """Five connections per case (the body limit is 64 KiB)."""
    with good_client(target.good_url, target.good_status):
        assert [statuses(exchange(target.port, wire)) for _ in range(5)] == [[413]] * 5
    release_all(target)


# -- framing: chunk sizes and Content-Length ----------------------------------------------

def chunked(size_line: bytes, data: bytes = b"abcdef") -> bytes:
    return (b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + size_line + b"\r\n" + data + b"\r\n0\r\n\r\n")


def with_length(*values: bytes) -> bytes:
    fields = b"".join(b"Content-Length: " + v + b"\r\n" for v in values)
    return b"POST /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\nabcde"


FRAMING = [
    ("chunk -6", chunked(b"-6"), 400),
    ("chunk -0", chunked(b"-0"), 400),
    ("chunk zz", chunked(b"zz"), 400),
    ("chunk 0x10", chunked(b"0x10"), 400),
    ("chunk empty", chunked(b""), 400),
    ("chunk 40 hex digits", chunked(b"F" * 40), 400),
    ("chunk 2^64-1, then 70 KB", chunked(b"F" * 16, b"z" * 70_000), 413),
    ("chunk extension of 64 KiB", chunked(b"6;" + b"e" * 65536), 431),
    ("two lengths", with_length(b"5", b"6"), 400),
    ("length in a list", with_length(b"5, 6"), 400),
    ("length ²", with_length("²".encode()), 400),
    ("length -1", with_length(b"-1"), 400),
    ("length +5", with_length(b"+5"), 400),
    ("length 1e3", with_length(b"1e3"), 400),
    ("length 0x5", with_length(b"0x5"), 400),
    ("length empty", with_length(b""), 400),
    ("length with chunked", with_length(b"5") .replace(
        b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n", 1), 400),
]


@pytest.mark.parametrize(("wire", "status"), [(w, s) for _, w, s in FRAMING],
                         ids=[n for n, _, _ in FRAMING])
def test_bad_framing_gets_its_status(target: Target, wire: bytes, status: int) -> None:
    """Twenty connections per case."""
    with good_client(target.good_url, target.good_status):
        assert [statuses(exchange(target.port, wire)) for _ in range(20)] == [[status]] * 20
    release_all(target)


def test_a_repeated_identical_length_is_one_length(target: Target) -> None:
    raw = exchange(target.port, with_length(b"5", b"5"))
    got = statuses(raw)
    assert len(got) == 1
    assert got[0] not in (400, 413)  # the handler answered it (405/404 for a POST)


# -- pipelining without reading -----------------------------------------------------------

def test_pipelining_without_reading_is_held_back(target: Target) -> None:
    """680 KB of pipelined requests (GET /metrics, about 20 000 of them, 4 KiB answers; the
    simulator's /register of 60 rows with a token, about 2 000, 8 KiB answers), none of the
    answers read until the server has stopped reading; then all of them are read."""
    count = 680_000 // len(target.big_request)
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with good_client(target.good_url, target.good_status) as good, \
            socket.create_connection(("127.0.0.1", target.port), timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(target.big_request * count + last,),
                                  name="pipelining-client", daemon=True)
        sender.start()
        wait_until(lambda: target.stats.paused >= 1, timeout=30, what="reading paused")
        good.answered(5)
        bound = (LIMITS.max_pipelined_bytes + READ_CHUNK + LIMITS.write_buffer_bytes
                 + 64 * 1024)
        assert target.held_bytes() <= bound  # not the 80 MB (16 MB) of answers
        raw = read_to_eof(sock, timeout=30)
        sender.join(30)
    got = statuses(raw)
    assert len(got) == count + 1
    assert set(got[:count]) == {200}
    release_all(target)
