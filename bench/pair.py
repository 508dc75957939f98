"""Two revisions of the gateway side by side on one simulated fleet, measured over the same
windows.

    python bench/pair.py --a 1cda3e6 --b HEAD --meters 160 --windows 6 --duration 20
    python bench/pair.py --a /path/to/checkout --b . --smoke --json out.json

``--a`` and ``--b`` are git revisions of this repository (each is exported with ``git
archive`` into the work directory) or directories that hold a checkout; each gateway runs
there (``python -m gateway`` imports the gateway of its working directory). One simulator
(this checkout's) serves the fleet and one broker takes both gateways' messages; each gateway
polls every meter with the fleet benchmark's configuration (bench/fleet.py), under a base
topic, state directory and ports of its own.

Once both polled every meter and ``--settle`` seconds passed, ``--windows`` windows of
``--duration`` seconds follow. In each, the CPU of both processes (/proc/<pid>/stat) and the
polls their own ``/metrics`` counted give CPU ms per meter-poll, and their ratio b / a.

Why side by side: on a shared virtual machine the cost of the same code measured in
successive runs moved by 10-15 % (bench/RESULTS.md, run D), as much as the differences looked
for. Two gateways in the same windows meet the same machine, so the ratio keeps only what
differs between them. Both gateways together need about twice the CPU of one: keep the
fleet small enough that the machine is not saturated (160 meters at 1 s on 2 cores). From
run to run the same pair still moved by up to ±6 % there (within a run the windows agreed
within ±1.5 %): run a comparison both ways round (``--a X --b Y``, then ``--a Y --b X``),
and one revision against itself to see what the second start costs.
``--pin CPU`` runs both gateways on that one CPU and the simulator and the broker on the
others, so that the two gateways also share a core and its caches (together they must then
fit in one core: about 90 meters at 1 s on the benchmark machine).
The figures are written to ``--results`` (between ``<!-- pair:begin -->`` and
``<!-- pair:end -->``) and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fleet
import procstat
import report
from processes import REPO, Child, python
from simulator import PASSWORD

BEGIN, END = "<!-- pair:begin -->", "<!-- pair:end -->"
SIDES = ("a", "b")


def checkout(spec: str, work: Path, side: str) -> Path:
    """A directory that holds revision ``spec``'s tree (``spec`` itself when a directory)."""
    if Path(spec).is_dir():
        return Path(spec).resolve()
    target = work / f"tree-{side}"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", spec], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def polls(url: str) -> float:
    """The polls the gateway's own ``/metrics`` counted so far."""
    counters = fleet.scrape(url)
    assert counters is not None
    return counters["egauge_meter_polls"]


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    trees = {side: checkout(getattr(args, side), work, side) for side in SIDES}
    broker, broker_port = fleet.start_broker(work)
    pin = (["taskset", "--cpu-list", str(args.pin)] if args.pin is not None else [])
    sim = Child(f"simulator-{args.meters}", python(
        "simulator.py", "--meters", str(args.meters), "--host", args.host, "--port",
        str(args.port)), work)
    if args.pin is not None:  # the rest of the machine's CPUs for the simulator and broker
        others = os.sched_getaffinity(0) - {args.pin} or {args.pin}
        for pid in (sim.pid, broker.pid):
            os.sched_setaffinity(pid, others)
    gateways: dict[str, tuple[Child, str]] = {}
    windows: list[dict[str, float]] = []
    try:
        lines = sim.expect(f"{args.meters - 1} ", 120)
        urls = [line.split()[1] for line in lines[lines.index("ready") + 1:]]
        for side in SIDES:
            http_port = fleet.free_port()
            cfg = fleet.gateway_config(work, side, urls, broker_port, f"pair/{side}",
                                       args.interval, http_port, {})
            argv = [*pin, sys.executable, "-m", "gateway", "run", "-c", str(cfg)]
            child = Child(side, argv, work, env={"BENCH_PW": PASSWORD}, stdin=False,
                          cwd=trees[side])
            gateways[side] = (child, f"http://127.0.0.1:{http_port}/metrics")
        wait_polled(gateways, args.meters, 30 + args.meters / 20)
        cpus = {s: allowed_cpus(c.pid) for s, (c, _) in gateways.items()}
        time.sleep(args.settle)
        for _ in range(args.windows):
            before = {s: (procstat.cpu_seconds(c.pid), polls(u)) for s, (c, u) in
                      gateways.items()}
            time.sleep(args.duration)
            after = {s: (procstat.cpu_seconds(c.pid), polls(u)) for s, (c, u) in
                     gateways.items()}
            if any(after[s][1] <= before[s][1] for s in SIDES):
                raise RuntimeError(f"a gateway counted no polls in a window: {after}")
            window = {s: 1000 * (after[s][0] - before[s][0]) / (after[s][1] - before[s][1])
                      for s in SIDES}
            windows.append(window)
            print(f"a {window['a']:.3f}  b {window['b']:.3f}  ms/meter-poll  "
                  f"b/a {window['b'] / window['a']:.3f}", flush=True)
    finally:
        codes = {s: c.terminate() for s, (c, _) in gateways.items()}
        sim.close_input()
        broker.terminate()
    bad = {s: code for s, code in codes.items() if code != 0}
    if bad:
        raise RuntimeError(f"a gateway did not stop cleanly: {bad} (logs in {work})")
    ratios = [w["b"] / w["a"] for w in windows]
    return {"a": args.a, "b": args.b, "meters": args.meters, "cpus": cpus, "windows": windows,
            "median_ratio": statistics.median(ratios), "min_ratio": min(ratios),
            "max_ratio": max(ratios)}


def allowed_cpus(pid: int) -> str:
    """The CPUs ``pid`` may run on (``Cpus_allowed_list`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return ""


def wait_polled(gateways: dict[str, tuple[Child, str]], meters: int, timeout: float) -> None:
    """Until each gateway counted at least one poll per meter."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if all(polls(url) >= meters for _, url in gateways.values()):
                return
        except OSError:  # its HTTP endpoint is not up yet
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every meter polled by both within {timeout:g} s")
        for child, _ in gateways.values():
            if child.proc.poll() is not None:
                raise RuntimeError(f"gateway {child.name} ended (log {child.log})")
        time.sleep(0.5)


def section(command: str, figures: dict[str, object]) -> str:
    windows = figures["windows"]
    assert isinstance(windows, list)
    rows = [f"| {i + 1} | {w['a']:.3f} | {w['b']:.3f} | {w['b'] / w['a']:.3f} |"
            for i, w in enumerate(windows)]
    return "\n".join([
        BEGIN,
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}; {figures['meters']} meters, "
        f"a = `{figures['a']}`, b = `{figures['b']}`)",
        "",
        "| window | a: CPU ms / meter-poll | b: CPU ms / meter-poll | b / a |",
        "|---:|---:|---:|---:|",
        *rows,
        "",
        f"b / a: median {figures['median_ratio']:.3f}, from {figures['min_ratio']:.3f} "
        f"to {figures['max_ratio']:.3f}",
        END,
    ])



def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="a git revision or a checkout directory")
    parser.add_argument("--b", required=True, help="a git revision or a checkout directory")
    parser.add_argument("--meters", type=int, default=160)
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--pin", type=int, default=None, metavar="CPU",
                        help="run both gateways on this CPU only (taskset): the same core, "
                             "the same caches; the simulator and the broker use the others")
    parser.add_argument("--results", default=None, help="write the figures into this page")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    parser.add_argument("--work", default=None, help="keep configs, trees and logs here")
    parser.add_argument("--smoke", action="store_true",
                        help="3 meters, 2 windows of 4 s, any free port: that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.meters, args.windows, args.duration, args.settle = 3, 2, 4.0, 1.0
        args.port = 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "python bench/pair.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="pair-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = run(args, work)
    print(f"b / a: median {figures['median_ratio']:.3f} "
          f"({figures['min_ratio']:.3f} to {figures['max_ratio']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, **figures}, indent=1))
    if args.results:
        report.write_between(Path(args.results), BEGIN, END, section(command, figures),
                             "# Side by side")
    return 0


if __name__ == "__main__":
    sys.exit(main())
