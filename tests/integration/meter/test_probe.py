"""``python -m gateway probe`` as a subprocess against a simulator in a background thread."""

from __future__ import annotations

import math
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import free_port
from tests.support.simulator import SIM_PASSWORD

pytestmark = pytest.mark.integration

Start = Callable[..., ThreadedSimServer]


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EGAUGE_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "probe", *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**clean, **(env or {})},
    )


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "password"
    path.write_text(SIM_PASSWORD + "\n")
    return str(path)


def table(stdout: str) -> dict[str, list[str]]:
    """The register table: name -> the cells after it (name may contain spaces)."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("register"))
    type_col = lines[head].index("type")
    rows = {}
    for line in lines[head + 1:]:
        if not line.strip():
            break
        rows[line[:type_col].strip()] = line[type_col:].split()
    return rows


def test_probe_prints_identity_and_every_register(threaded_simulator: Start,
                                                  password_file: str) -> None:
    meter = SimMeter(password=SIM_PASSWORD)
    sim = threaded_simulator([meter])
    result = probe(sim.url_for(meter), "--password-file", password_file, "--local")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"serial    {meter.serial}" in out
    assert f"model     {meter.model}" in out
    assert f"hostname  {meter.hostname}" in out
    ts = float(next(line.split()[2] for line in out.splitlines() if line.startswith("meter ts")))
    rows = table(out)
    assert list(rows) == [r.name for r in meter.registers]
    t = math.floor(ts)
    for name, cells in rows.items():
        code, rate, unit = cells[0], float(cells[1]), cells[2]
        assert code == meter.register(name).type_code
        assert rate == pytest.approx(meter.rate(name, t), rel=1e-5, abs=1e-6), name
        assert unit == {"P": "W", "S": "VA", "var": "var", "PQ": "var", "I": "A", "V": "V",
                        "F": "Hz", "T": "°C"}[code]
    grid = rows["Grid"]
    joules = meter.cumulative("Grid", t) - meter.cumulative("Grid", meter.epoch)
    assert float(grid[3]) == pytest.approx(joules / 3_600_000, rel=1e-5)
    assert grid[4] == "kWh"
    assert "Tpcb" in out  # --local adds the sensor table
    assert meter.logins == 1
    assert meter.calls_to("/auth/logout"), "the probe logs out"


def test_probe_takes_the_password_from_the_environment(threaded_simulator: Start) -> None:
    meter = SimMeter(username="admin", password=SIM_PASSWORD)
    sim = threaded_simulator([meter])
    result = probe(sim.url_for(meter), env={"EGAUGE_PASSWORD": SIM_PASSWORD,
                                            "EGAUGE_USERNAME": "admin"})
    assert result.returncode == 0, result.stderr
    assert "Panel A/B" in result.stdout


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 3
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert SIM_PASSWORD not in result.stderr
    return lines[0]


def test_probe_bad_credentials(threaded_simulator: Start, tmp_path: Path) -> None:
    meter = SimMeter(password=SIM_PASSWORD)
    sim = threaded_simulator([meter])
    wrong = tmp_path / "wrong"
    wrong.write_text("not-" + SIM_PASSWORD)
    line = one_error_line(probe(sim.url_for(meter), "--password-file", str(wrong)))
    assert "login refused: Invalid credentials." in line
    assert len(meter.calls_to("/auth/login", "POST")) == 1


def test_probe_unreachable_host(password_file: str) -> None:
    line = one_error_line(probe(f"http://127.0.0.1:{free_port()}",
                                "--password-file", password_file))
    assert "connection refused" in line


def test_probe_without_a_password_says_so() -> None:
    line = one_error_line(probe("http://127.0.0.1:9"))
    assert "no password" in line


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, name="not-an-egauge", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_probe_not_an_egauge(web_server: str, password_file: str) -> None:
    line = one_error_line(probe(web_server, "--password-file", password_file))
    assert "without an eGauge login challenge" in line
    assert "HTTP 404" in line


def test_probe_tls(threaded_simulator: Start, password_file: str, tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    meter = SimMeter(password=SIM_PASSWORD)
    url = threaded_simulator([meter], ssl=context).url_for(meter)
    line = one_error_line(probe(url, "--password-file", password_file))
    assert "TLS certificate verification failed" in line
    ok = probe(url, "--password-file", password_file, "--ca-file", str(ca_file))
    assert ok.returncode == 0, ok.stderr
    insecure = probe(url, "--password-file", password_file, "--insecure")
    assert insecure.returncode == 0, insecure.stderr
    assert table(ok.stdout).keys() == table(insecure.stdout).keys()
