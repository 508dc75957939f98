"""The reproductions against the HTTP endpoint of a real ``python -m gateway run -c FILE``
process (the simulator as its meter, the session's Mosquitto): a negative chunk size, 680 KB
of pipelined ``GET /metrics`` never read, a repeated Content-Length with another value and a
non-ASCII digit as Content-Length. After each, /healthz answers, the polls go on (the meter's
state keeps advancing on MQTT), and SIGTERM ends the process with exit code 0 -- in the
pipelining case while the unread connection is still open."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.integration.runtime.test_run_process import PASSWORD, start_gateway
from tests.support.broker import Broker, free_port
from tests.support.mqtt import subscriber
from tests.support.waiting import wait_until
from tests.support.web import exchange, responses

pytestmark = pytest.mark.integration

PIPELINED = 680_000
RSS_BUDGET = 32 << 20  # the answers to 680 KB of GET /metrics are about 80 MB


def write_config(path: Path, broker: Broker, prefix: str, sim_url: str, state_dir: Path,
                 http_port: int) -> Path:
    path.write_text(f"""
gateway: {{id: http-proc, log_level: info, log_format: json, state_dir: "{state_dir}",
          shutdown_timeout_s: 5}}
meters:
  - id: main
    url: {sim_url}
    username: owner
    password: ${{SIM_PASSWORD}}
    poll_interval_s: 0.5
mqtt: {{host: {broker.host}, port: {broker.port}, base_topic: {prefix},
       homeassistant: {{enabled: false}}}}
modbus: {{enabled: false}}
http: {{enabled: true, host: 127.0.0.1, port: {http_port}}}
""")
    return path


def healthz(port: int) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


Attack = Callable[[int, int], AbstractContextManager[None]]  # (http port, pid)


def single(wire: bytes) -> Attack:
    """One request that gets 400 and a closed connection."""
    @contextmanager
    def attack(port: int, pid: int) -> Iterator[None]:
        got = responses(exchange(port, wire, half_close=False))
        assert [r.status for r in got] == [400]
        assert metric(port, "egauge_http_rejected_total", status="400") == 1
        yield
    return attack


@contextmanager
def pipelined_unread(port: int, pid: int) -> Iterator[None]:
    """680 KB of pipelined GET /metrics on one connection that reads nothing, held open."""
    before = rss(pid)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sender = threading.Thread(target=_send_quietly,
                                  args=(sock, request * (PIPELINED // len(request))),
                                  name="pipelining-client", daemon=True)
        sender.start()
        wait_until(lambda: metric(port, "egauge_http_reads_paused_total") >= 1, timeout=30,
                   what="the endpoint to stop reading the pipelining client")
        assert rss(pid) - before < RSS_BUDGET
        yield  # the checks and SIGTERM happen with this connection open and unread
    sender.join(30)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the gateway stopped (SIGTERM) with it open
        sock.sendall(data)


ATTACKS: dict[str, Attack] = {
    "negative-chunk": single(
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"-6\r\nabcdef\r\n0\r\n\r\n"),
    "pipelined-unread": pipelined_unread,
    "two-lengths": single(
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
        b"abcdef"),
    "length-superscript": single(
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: \u00b2\r\n\r\nab".encode()),
}


@pytest.fixture
def simulator() -> Iterator[tuple[SimMeter, str]]:
    meter = SimMeter("SIM0302", password=PASSWORD)
    with ThreadedSimServer([meter]) as sim:
        yield meter, sim.url_for(meter)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_gateway_process_survives(name: str, broker: Broker, topic_prefix: str,
                                      tmp_path: Path,
                                      simulator: tuple[SimMeter, str]) -> None:
    meter, url = simulator
    port, p = free_port(), topic_prefix
    config = write_config(tmp_path / "gateway.yaml", broker, p, url, tmp_path / "state", port)
    log = tmp_path / "gateway.log"
    with subscriber(broker, f"{p}/main/state") as sub:
        proc = start_gateway(config, log)
        try:
            wait_until(lambda: healthz(port) == 200, timeout=30, what="the endpoint")
            sub.wait_for(f"{p}/main/state")
            with ATTACKS[name](port, proc.pid):
                assert healthz(port) == 200
                last_ts = sub.wait_for(f"{p}/main/state").json()["ts"]
                calls = meter.recorder.total
                sub.wait_for(f"{p}/main/state", lambda m: m.json()["ts"] > last_ts)
                wait_until(lambda: meter.recorder.total > calls, what="further polls")
                assert proc.poll() is None
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = log.read_text()
    assert code == 0, text
    assert '"gateway_stopped"' in text
    assert PASSWORD not in text
