"""Heap benchmark: what one more meter costs in memory, and where it goes.

    python bench/heap.py                            # 50 and 200 meters, 45 s each, port 80
    python bench/heap.py --meters 50,200,500 --no-trace   # resident memory only
    python bench/heap.py --smoke --results out.md   # 2 and 4 meters, seconds, any free port

For each fleet size N a child process (this script with ``--child``) starts a broker and the
benchmark's simulator of N meters (bench/simulator.py), runs the gateway in its own event
loop (``gateway.runtime.App``, the fleet benchmark's configuration: MQTT with per-register
topics and discovery, history, the HTTP endpoint, Modbus up to 247 meters), waits
``--wait`` seconds, runs a full collection and reads its own ``VmRSS`` and ``VmHWM``. That
run traces nothing, so its memory is the gateway's own (plus the child's imports of the
benchmark, the same at every size); it also reads what CPython's small-object allocator
holds (in live objects, and free in its pools: memory that bursts left behind). Unless
``--no-trace``, a second child per size does the same under ``tracemalloc`` (one frame) and
keeps a snapshot of the heap.

The page then gives, per size, the resident memory; the least-squares growth per meter over
the sizes (the fleet benchmark's target: under 0.1 MB); and, between the smallest and the
largest size, the traced heap's growth per meter by source file and by source line (what
allocated the objects that are still alive), the ``--top`` largest. What the heap holds for
the whole process (imports, the loop, the outputs) is the same at both sizes and falls out of
the difference. The figures go to ``--results`` (between ``<!-- heap:begin -->`` and
``<!-- heap:end -->``) and ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import linecache
import os
import shlex
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import fleet
import procstat
import report
from processes import REPO, Child, python
from simulator import PASSWORD

BEGIN, END = "<!-- heap:begin -->", "<!-- heap:end -->"
MIB = 1024 * 1024


def allocator(work: Path) -> dict[str, float]:
    """What CPython's small-object allocator holds, in MiB (``sys._debugmallocstats``, which
    writes to the C stderr): in live blocks, in free blocks of pools in use (fragmentation)
    and in all."""
    path = work / "mallocstats.txt"
    saved = os.dup(2)
    with path.open("wb") as out:
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    wanted = {"# bytes in allocated blocks": "live", "# bytes in available blocks": "free"}
    figures = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        key = key.strip()
        if key in wanted:
            figures[wanted[key]] = int(value.strip().replace(",", "")) / MIB
        elif key == "Total" and "total" not in figures:  # the first Total: the arenas
            figures["total"] = int(value.strip().replace(",", "")) / MIB
    return figures


def child(args: argparse.Namespace) -> int:
    """One fleet size in this process: the gateway run for ``--wait`` seconds, then its
    memory (and heap snapshot) written to ``--out``."""
    from gateway.config import load_or_report
    from gateway.support import configure_logging

    n, out = args.child, Path(args.out)
    kind = "trace" if args.traced else "rss"
    work = out / f"work-{n}-{kind}"
    work.mkdir(parents=True)
    broker, broker_port = fleet.start_broker(work)
    sim = Child(f"simulator-{n}", python("simulator.py", "--meters", str(n), "--host",
                                         args.host, "--port", str(args.port)), work)
    try:
        lines = sim.expect(f"{n - 1} ", 120)
        urls = [line.split()[1] for line in lines[lines.index("ready") + 1:]]
        os.environ["BENCH_PW"] = PASSWORD
        path = fleet.gateway_config(work, "gateway", urls, broker_port, "heap", args.interval,
                                    fleet.free_port(), {})
        config = load_or_report(path)
        if config is None:
            raise RuntimeError(f"the benchmark's configuration did not load: {path}")
        configure_logging("warning", "json")
        figures = asyncio.run(measured(config, args.wait, args.traced,
                                       out / f"heap-{n}.snapshot", work))
    finally:
        sim.close_input()
        broker.terminate()
    (out / f"{kind}-{n}.json").write_text(json.dumps(figures))
    return 0


async def measured(config: Any, wait: float, trace: bool, snapshot: Path, work: Path
                   ) -> dict[str, Any]:
    from gateway.runtime.app import App

    if trace:
        tracemalloc.start(1)
    app = App(config)
    task = asyncio.create_task(app.run(), name="gateway")
    try:
        await asyncio.sleep(wait)
        if task.done():
            raise RuntimeError(f"the gateway stopped early: {task.result()}")
        gc.collect()
        figures: dict[str, Any] = {"polled": sum(1 for p in app.pollers.values()
                                                 if p.stats.polls_ok),
                                   **{key: procstat.status_mb(os.getpid(), key)
                                      for key in ("VmRSS", "VmHWM")},
                                   "pymalloc": allocator(work)}
        if trace:
            tracemalloc.take_snapshot().dump(str(snapshot))
            figures["traced_bytes"] = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
    finally:
        app.request_stop()
        code = await task
    if code != 0:
        raise RuntimeError(f"the gateway exited {code}")
    return figures


def where(frame: tracemalloc.Frame) -> str:
    path = frame.filename
    for prefix in (str(REPO) + "/", sys.prefix + "/", os.path.dirname(os.__file__) + "/"):
        path = path.removeprefix(prefix)
    return path


def growth(small: tracemalloc.Snapshot, large: tracemalloc.Snapshot, meters: int, key: str,
           top: int) -> list[dict[str, Any]]:
    """The ``top`` largest growths of ``large`` over ``small``, per meter, by ``key``."""
    rows = []
    for stat in large.compare_to(small, key)[:top]:
        frame = stat.traceback[0]
        place = where(frame) if key == "filename" else f"{where(frame)}:{frame.lineno}"
        rows.append({"where": place, "bytes_per_meter": stat.size_diff / meters,
                     "objects_per_meter": stat.count_diff / meters,
                     "code": linecache.getline(frame.filename, frame.lineno).strip()
                     if key == "lineno" else ""})
    return rows


def growth_of(points: list[tuple[int, float]]) -> float:
    per_meter = report.slope(points)
    assert per_meter is not None, "--meters: at least two fleet sizes"
    return per_meter


def section(command: str, machine: dict[str, str], figures: dict[str, Any]) -> str:
    out = [BEGIN, f"Command: `{command}` ({figures['date']}; {figures['wait']:g} s after the "
           f"start of each size; poll interval {figures['interval']:g} s)", "",
           "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()), "",
           "| meters | meters polled | RSS MiB | peak RSS MiB | small-object allocator MiB: "
           "live / free in its pools / all |", "|---:|---:|---:|---:|---:|"]
    out += [f"| {s['meters']} | {s['polled']} | {s['VmRSS']:.1f} | {s['VmHWM']:.1f} | "
            f"{s['pymalloc']['live']:.1f} / {s['pymalloc']['free']:.1f} / "
            f"{s['pymalloc']['total']:.1f} |" for s in figures["sizes"]]
    out += ["", f"Growth per meter (least squares over the sizes): RSS "
            f"{figures['rss_kib_per_meter']:.1f} KiB, peak RSS "
            f"{figures['peak_kib_per_meter']:.1f} KiB."]
    heap = figures.get("heap")
    if heap:
        out += ["", f"The traced heap from {heap['from']} to {heap['to']} meters: "
                f"{heap['bytes_per_meter'] / 1024:.1f} KiB a meter. By file:", "",
                "| KiB / meter | objects / meter | file |", "|---:|---:|---|"]
        out += [f"| {r['bytes_per_meter'] / 1024:.2f} | {r['objects_per_meter']:.1f} | "
                f"`{r['where']}` |" for r in heap["by_file"]]
        out += ["", "By line:", "", "| KiB / meter | objects / meter | line | code |",
                "|---:|---:|---|---|"]
        out += [f"| {r['bytes_per_meter'] / 1024:.2f} | {r['objects_per_meter']:.1f} | "
                f"`{r['where']}` | `{r['code'][:70].replace('|', '/')}` |"
                for r in heap["by_line"]]
    out.append(END)
    return "\n".join(out)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    passes = [False] + ([True] if args.trace else [])
    for n in args.meters:
        for trace in passes:
            argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(n),
                    "--out", str(work), "--wait", str(args.wait), "--host", args.host,
                    "--port", str(args.port), "--interval", str(args.interval),
                    *(["--traced"] if trace else [])]
            done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
            (work / f"child-{n}-{'trace' if trace else 'rss'}.log").write_text(
                done.stdout + done.stderr)
            if done.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv)} exited {done.returncode}:\n"
                                   f"{done.stderr[-3000:]}")
    sizes = [{"meters": n, **json.loads((work / f"rss-{n}.json").read_text())}
             for n in args.meters]
    for s in sizes:
        if s["polled"] < s["meters"]:
            raise RuntimeError(f"only {s['polled']} of {s['meters']} meters were polled")
    figures: dict[str, Any] = {
        "sizes": sizes, "wait": args.wait, "interval": args.interval,
        "rss_kib_per_meter": 1024 * growth_of([(s["meters"], s["VmRSS"]) for s in sizes]),
        "peak_kib_per_meter": 1024 * growth_of([(s["meters"], s["VmHWM"]) for s in sizes]),
    }
    if args.trace:
        lo, hi = min(args.meters), max(args.meters)
        small = tracemalloc.Snapshot.load(str(work / f"heap-{lo}.snapshot"))
        large = tracemalloc.Snapshot.load(str(work / f"heap-{hi}.snapshot"))
        total = sum(s.size_diff for s in large.compare_to(small, "filename"))
        figures["heap"] = {
            "from": lo, "to": hi, "bytes_per_meter": total / (hi - lo),
            "by_file": growth(small, large, hi - lo, "filename", args.top),
            "by_line": growth(small, large, hi - lo, "lineno", args.top),
        }
    return figures


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", default="50,200", help="fleet sizes, comma-separated")
    parser.add_argument("--wait", type=float, default=45.0,
                        help="seconds from the start to the measurement")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="poll interval (s); a longer one keeps a traced large fleet "
                        "from saturating the loop (tracemalloc slows Python down)")
    parser.add_argument("--host", default="127.0.0.2", help="the first meter's address")
    parser.add_argument("--port", type=int, default=80, help="the meters' port (0: any)")
    parser.add_argument("--top", type=int, default=25, help="rows of each heap table")
    parser.add_argument("--no-trace", dest="trace", action="store_false",
                        help="resident memory only (no tracemalloc pass)")
    parser.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    parser.add_argument("--work", default=None, help="keep logs and snapshots here")
    parser.add_argument("--smoke", action="store_true",
                        help="2 and 4 meters, 4 s, any free port: checks that it runs")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.meters, args.wait, args.port = "2,4", 4.0, 0
    args.meters = sorted({int(m) for m in str(args.meters).split(",")})
    if args.child is None and len(args.meters) < 2:
        parser.error("--meters: at least two fleet sizes")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    procstat.raise_fd_limit()
    if args.child is not None:
        return child(args)
    command = "python bench/heap.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="heap-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = run(args, work)
    figures["date"] = datetime.date.today().isoformat()
    text = section(command, procstat.machine(), figures)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, **figures}, indent=1))
    if args.results:
        report.write_between(Path(args.results), BEGIN, END, text, "# Heap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
