"""Fleet benchmark: the gateway against a floor and a peer, on one simulated fleet.

    python bench/fleet.py                      # 50, 200, 500 meters, ~25 s each, port 80
    python bench/fleet.py --meters 500,1000 --duration 30
    python bench/fleet.py --smoke --json out.json --results out.md   # seconds, high ports

For each fleet size N one simulator process serves N meters (one 127.0.0.x address each,
``--port``; the peer client only reaches port 80, which needs root) and a Mosquitto broker
runs for the whole benchmark. Then, one after the other against the same fleet:

- gateway: ``python -m gateway run -c CFG``, the product's defaults with MQTT, Home Assistant
  discovery, the HTTP endpoint and (up to 247 meters, the unit ids one endpoint has) Modbus on;
- floor: bench/floor.py, only the work no gateway can avoid per poll;
- peer: bench/peer.py, PyPI's egauge-async client polling the same meters;
- workers: the gateway with ``gateway.workers: auto`` (a supervisor and one worker process
  per CPU), measured as the whole process tree;
- each ``--variant NAME=JSON``: the gateway with those settings merged into its configuration
  (a name that contains ``workers`` is measured as a process tree too).

Each subject warms up (every meter polled once), settles for ``--settle`` seconds and is then
measured for ``--duration`` seconds: CPU (user + system from /proc/<pid>/stat, every thread),
peak RSS (VmHWM), polls the meters answered (the simulator records each request's arrival),
state messages at a subscriber process (matched to the poll that fetched them: on schedule
when they arrive within one interval; latency = arrival at the subscriber - the poll's arrival
at the meter), the gateway's own counters (``/metrics``, read just outside the window), the
requests besides the polls that the meters answered in the window (listed under the table: a
steady state has none, and catch-up reads or logins there are part of the CPU measured) and
what the rest of the machine used meanwhile. Results go to ``--results`` (between the markers
``<!-- fleet:begin -->`` and ``<!-- fleet:end -->``; the rest of the page is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import measures
import procstat
import report
from measures import Phase, Window
from processes import REPO, Child, python
from simulator import PASSWORD

from gateway.simulator import default_registers

SUBJECTS = ("gateway", "floor", "peer", "workers")
MODBUS_UNITS = 247  # unit ids 1-247: what one Modbus endpoint can address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(work: Path) -> tuple[Child, int]:
    port = free_port()
    conf = work / "mosquitto.conf"
    # set_tcp_nodelay: without it Nagle's algorithm meets delayed ACKs and holds small
    # messages up to 40 ms on their way to the subscriber, whoever published them
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "set_tcp_nodelay true\nmax_queued_messages 100000\n")
    mosquitto = next((p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
                      if Path(p).exists()), "mosquitto")
    broker = Child("mosquitto", [mosquitto, "-c", str(conf)], work, stdin=False)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker, port
        except OSError:
            if time.monotonic() > deadline or broker.proc.poll() is not None:
                raise RuntimeError(f"mosquitto did not start (log {broker.log})") from None
            time.sleep(0.05)


def gateway_config(work: Path, name: str, urls: list[str], broker_port: int, base: str,
                   interval: float, http_port: int, overrides: dict[str, Any]) -> Path:
    """The gateway's configuration (JSON, which is YAML too): every meter, MQTT and (up to
    247 meters) Modbus on, the rest as the product's defaults; ``overrides`` (``--gateway``)
    are merged in section by section."""
    modbus = len(urls) <= MODBUS_UNITS
    config: dict[str, Any] = {
        "gateway": {"id": "bench", "log_level": "info", "log_format": "json",
                    "state_dir": f"{work}/state-{name}"},
        "meters": [{"id": f"m{i:04d}", "url": url, "username": "owner",
                    "password": "${BENCH_PW}", "poll_interval_s": interval,
                    "modbus_unit_id": i + 1 if modbus else 1} for i, url in enumerate(urls)],
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "base_topic": base,
                 "client_id": f"bench-{name}"},
        "modbus": {"enabled": modbus, "host": "127.0.0.1", "port": free_port()},
        "http": {"enabled": True, "host": "127.0.0.1", "port": http_port},
    }
    for section, values in overrides.items():
        config[section] = {**config.get(section, {}), **values}
    path = work / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)
    return path


def scrape(url: str | None) -> dict[str, float] | None:
    """The gateway's counters from its metrics endpoint (outside the CPU window)."""
    if url is None:
        return None
    with urllib.request.urlopen(url, timeout=10) as response:
        return measures.gateway_counters(response.read().decode())


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.registers = len(default_registers())
        self.metrics: dict[str, str] = {}

    def run(self) -> list[Phase]:
        broker, self.broker_port = start_broker(self.work)
        self.broker = broker
        phases: list[Phase] = []
        try:
            for n in self.args.meters:
                phases.extend(self.fleet_size(n))
        finally:
            broker.terminate()
        return phases

    def fleet_size(self, n: int) -> list[Phase]:
        args = self.args
        sim = Child(f"simulator-{n}", python("simulator.py", "--meters", str(n), "--host",
                                             args.host, "--port", str(args.port)), self.work)
        try:
            lines = sim.expect(f"{n - 1} ", 120)
            urls = [line.split()[1] for line in lines[lines.index("ready") + 1:]]
            urls_file = self.work / f"urls-{n}.txt"
            urls_file.write_text("\n".join(lines[lines.index("ready") + 1:]) + "\n")
            phases = []
            for subject in args.subjects:
                phase = self.subject(subject, n, sim, urls, urls_file)
                print(report.one_line(phase), flush=True)
                phases.append(phase)
            return phases
        finally:
            sim.close_input()

    def subject(self, subject: str, n: int, sim: Child, urls: list[str],
                urls_file: Path) -> Phase:
        args, work = self.args, self.work
        base = f"bench/{subject}-{n}"
        sub = None
        if subject != "peer":
            sub = Child(f"subscriber-{subject}-{n}", python(
                "subscriber.py", "--port", str(self.broker_port), "--filter", f"{base}/+/state",
                "--expect", str(n), "--out", str(work / f"sub-{subject}-{n}.json")), work)
            sub.expect("ready", 20)
        proc = self.start(subject, n, urls, urls_file, base)
        note = ""
        warm_up_s = 30 + n / 20
        try:
            try:
                (sub or proc).expect("all" if sub else "warm", warm_up_s)
            except RuntimeError:  # measured all the same: the figures show what went wrong
                if proc.proc.poll() is not None:
                    raise
                note = f"not every meter polled within {warm_up_s:g} s of the start"
            time.sleep(args.settle)
            self.dump(sim, "discard")
            metrics_url = self.metrics.get(subject)
            before = scrape(metrics_url)
            window, cpu, others = self.measure(proc, sim, sub)
            after = scrape(metrics_url)
            peak = (procstat.tree_status_mb(proc.pid, "VmHWM") if self.is_tree(subject)
                    else procstat.status_mb(proc.pid, "VmHWM"))
            arrivals, requests = self.dump(sim, f"polls-{subject}-{n}")
        finally:
            code = proc.terminate() if self.is_gateway(subject) else proc.close_input()
            if sub is not None:
                sub.close_input()
        phase = Phase(subject, n, window.seconds, n * window.seconds / args.interval,
                      measures.polls_in(window, arrivals), cpu, peak, self.registers,
                      sim_cores=others[0] / window.seconds,
                      broker_cores=others[1] / window.seconds,
                      other_cores=others[2] / window.seconds)
        if code != 0:
            note = "; ".join(filter(None, (note, f"exit code {code}" + (
                " (killed: no stop within 60 s)" if code == -9 else ""))))
        phase.other_requests = dict(Counter(kind for t, kind in requests if t in window))
        phase.note = note
        if before is not None and after is not None:
            phase.counters = {k: after[k] - before[k] for k in after}
        if sub is not None:
            data = json.loads((work / f"sub-{subject}-{n}.json").read_text())
            got = measures.deliveries(window, data["arrivals"], arrivals, args.interval)
            phase.on_schedule = got.in_time
            phase.unmatched = got.unmatched
            phase.latency_ms = measures.p50_p99(got.latencies)
            phase.age_ms = measures.p50_p99(got.ages)
            phase.inside_ms = measures.p50_p99(got.inside) if got.inside else None
        return phase

    def start(self, subject: str, n: int, urls: list[str], urls_file: Path, base: str) -> Child:
        args, work = self.args, self.work
        name = f"{subject}-{n}"
        if self.is_gateway(subject):
            http_port = free_port()
            self.metrics[subject] = f"http://127.0.0.1:{http_port}/metrics"
            overrides = (args.gateway if subject == "gateway"
                         else merged(args.gateway, {"gateway": {"workers": args.workers}})
                         if subject == "workers"
                         else args.variants[subject])
            cfg = gateway_config(work, name, urls, self.broker_port, base, args.interval,
                                 http_port, overrides)
            return Child(name, [sys.executable, "-m", "gateway", "run", "-c", str(cfg)], work,
                         env={"BENCH_PW": PASSWORD}, stdin=False)
        common = ["--urls", str(urls_file), "--interval", str(args.interval),
                  "--out", str(work / f"{name}.json")]
        if subject == "floor":
            return Child(name, python("floor.py", *common, "--port", str(self.broker_port),
                                      "--topic-base", base), work)
        return Child(name, python("peer.py", *common), work)

    def is_gateway(self, subject: str) -> bool:
        """The gateway itself, or the gateway with the settings of a ``--variant``."""
        return subject in ("gateway", "workers") or subject in self.args.variants

    def is_tree(self, subject: str) -> bool:
        """A gateway of several processes (a supervisor and its workers): measured whole."""
        return self.is_gateway(subject) and "workers" in subject

    def measure(self, proc: Child, sim: Child, sub: Child | None
                ) -> tuple[Window, float, tuple[float, float, float]]:
        """CPU seconds over one window: the subject's, and those of the simulator, the broker
        and everything else on the machine (other than the subject, simulator, broker and
        subscriber)."""
        pids = [proc.pid, sim.pid, self.broker.pid] + ([sub.pid] if sub else [])
        tree = self.is_tree(proc.name.rsplit("-", 1)[0])
        profiler = self.profile(proc)

        def cpu() -> list[float]:
            return [procstat.tree_cpu_seconds(p) if tree and p == proc.pid
                    else procstat.cpu_seconds(p) for p in pids]

        start = time.time()
        machine = procstat.machine_busy_seconds()
        before = cpu()
        time.sleep(self.args.duration)
        after = cpu()
        machine = procstat.machine_busy_seconds() - machine
        end = time.time()
        if profiler is not None:
            profiler.wait(60)
        used = [b - a for a, b in zip(before, after, strict=True)]
        return Window(start, end), used[0], (used[1], used[2], machine - sum(used))

    def profile(self, proc: Child) -> subprocess.Popen[bytes] | None:
        """py-spy (``--profile DIR``) sampling the gateway over the window, as a flame graph
        and as collapsed stacks."""
        if self.args.profile is None or not self.is_gateway(proc.name.rsplit("-", 1)[0]):
            return None
        out = Path(self.args.profile)
        out.mkdir(parents=True, exist_ok=True)
        seconds = str(max(1, int(self.args.duration)))
        return subprocess.Popen(
            [shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
             or "py-spy", "record", "--pid", str(proc.pid), "--duration", seconds, "--rate", "200",
             "--nonblocking", "--threads", "--format", "raw", "-o", str(out / f"{proc.name}.txt"),
             *(["--subprocesses"] if self.is_tree(proc.name.rsplit("-", 1)[0]) else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def dump(self, sim: Child, name: str) -> tuple[list[list[float]], list[list[Any]]]:
        """The poll arrivals per meter since the last dump, and the other requests."""
        path = self.work / f"{name}.json"
        sim.send(f"dump {path}")
        sim.expect("dumped", 60)
        data = json.loads(path.read_text())
        return list(data["meters"]), list(data["others"])


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra``'s sections merged into ``base``'s, key by key."""
    return {**base, **{k: {**base.get(k, {}), **v} for k, v in extra.items()}}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", default="50,200,500", help="fleet sizes, comma-separated")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after warm-up")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval (s)")
    parser.add_argument("--host", default="127.0.0.2", help="the first meter's address")
    parser.add_argument("--port", type=int, default=80, help="the meters' port (0: any)")
    parser.add_argument("--subjects", default=",".join(SUBJECTS))
    parser.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    parser.add_argument("--work", default=None, help="keep configs and logs in this directory")
    parser.add_argument("--gateway", default="{}", type=json.loads, metavar="JSON",
                        help="settings merged into the gateway's configuration, e.g. "
                        "'{\"mqtt\": {\"per_register_topics\": false}}'")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="also measure the gateway with these settings merged in, as "
                        "subject NAME (repeatable), e.g. 'lean={\"history\": "
                        "{\"enabled\": false}}'")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="sample the gateway with py-spy during each window (pip install "
                        "egauge-gateway[bench]); CPU figures then include some profiler cost")
    parser.add_argument("--workers", default="auto", type=lambda v: v if v == "auto" else int(v),
                        help="gateway.workers of the workers subject (default auto: a worker "
                        "per CPU)")
    parser.add_argument("--smoke", action="store_true",
                        help="3 meters, 3 s, any free port: checks that the benchmark runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.meters, args.duration, args.settle, args.port = "3", 3.0, 0.5, 0
        args.workers = 2  # two workers whatever the machine has
    args.command = shlex.join(["python", "bench/fleet.py", *(argv or sys.argv[1:])])
    args.meters = [int(m) for m in str(args.meters).split(",")]
    args.variants = {}
    for text in args.variant:
        name, _, overrides = text.partition("=")
        if not name or not name.replace("-", "").isalnum() or name in SUBJECTS:
            parser.error(f"--variant {text!r}: expected NAME=JSON with a new name")
        args.variants[name] = json.loads(overrides)
    args.subjects = [s for s in args.subjects.split(",") if s] + list(args.variants)
    unknown = set(args.subjects) - set(SUBJECTS) - set(args.variants)
    if unknown:
        parser.error(f"unknown subjects {sorted(unknown)}; choose from {', '.join(SUBJECTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    procstat.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        phases = Bench(args, work).run()
    machine = procstat.machine()
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": args.command, "machine": machine,
             "phases": [asdict(p) for p in phases]}, indent=1))
    report.write(Path(args.results), args, machine, phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
