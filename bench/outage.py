"""Broker outage benchmark: the gateway polling a fleet through an outage of its MQTT broker.

    python bench/outage.py                          # 500 meters, 60 s outage, port 80
    python bench/outage.py --meters 500 --outage 60 --results bench/RESULTS.md
    python bench/outage.py --smoke                  # 3 meters, 3 s outage, high ports

One simulator process serves the fleet (as bench/fleet.py), Mosquitto runs with persistence,
a recording subscriber (bench/subscriber.py with a persistent session on ``<base>/+/state``
and ``<base>/+/history``, QoS 1) hears everything, and the gateway runs with its defaults.
Once every meter was polled and ``--before`` seconds passed, the broker is stopped for
``--outage`` seconds and started again (its sessions survive: the subscriber's queue holds
what is published while it reconnects). Measured:

- polls on schedule during the outage: the polls the meters answered over the polls due
  (the simulator records each one), and the gateway's own counters (ok, failed, skipped);
- the backlog: how long after the broker returned until the subscriber had every meter second
  of the outage (the latest first arrival of one of them), and whether the gateway then
  reported no history gap and no queued message (its ``/metrics``, read every half second,
  only the families that tell);
- completeness: every meter second from ``--before`` seconds before the outage to
  ``--after`` seconds after it, in the subscriber's states plus history rows; the seconds
  missing (none is the target), and how many seconds came twice (delivery is at least once);
- the gateway's CPU and peak RSS, and the messages its queue dropped (``mqtt.queue_limit``).

The figures go to ``--results`` between ``<!-- outage:begin -->`` and ``<!-- outage:end -->``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import measures
import procstat
import report
from fleet import free_port, gateway_config
from processes import REPO, Child, python
from simulator import PASSWORD

from gateway.mqtt import RETRY_MAX_S

BEGIN, END = "<!-- outage:begin -->", "<!-- outage:end -->"


class Broker:
    """Mosquitto with persistence, stopped and started again on the same port."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        store = work / "mosquitto-store"
        store.mkdir(parents=True, exist_ok=True)
        self.conf = work / "mosquitto-outage.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence true\npersistence_location {store}/\n"
                             "autosave_interval 1\nmax_queued_messages 0\n"
                             "set_tcp_nodelay true\n")
        self.child: Child | None = None
        self.runs = 0

    def start(self) -> None:
        mosquitto = next((p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
                          if Path(p).exists()), "mosquitto")
        self.runs += 1
        self.child = Child(f"mosquitto-{self.runs}", [mosquitto, "-c", str(self.conf)],
                           self.work, stdin=False)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.child.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto did not start ({self.child.log})") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: the broker saves its sessions and queues, and is gone."""
        if self.child is not None:
            self.child.terminate(30)
            self.child = None


COUNTERS = {"egauge_meter_polls": "polls", "egauge_meter_poll_errors": "errors",
            "egauge_meter_polls_skipped": "skipped", "egauge_mqtt_queued": "queued",
            "egauge_mqtt_dropped": "dropped", "egauge_history_gap_seconds": "gap_s",
            "egauge_history_rows_published": "history_rows",
            "egauge_mqtt_connected": "connected"}
DRAIN = ("egauge_mqtt_queued", "egauge_history_gap_seconds", "egauge_mqtt_connected")


def counters(url: str, families: tuple[str, ...] = tuple(COUNTERS)) -> dict[str, float]:
    """Polls, queued messages, drops and the open history gaps, from the gateway's /metrics:
    only these ``families`` (``name[]``), so that the scrapes every half second while the
    backlog drains do not load the gateway (a whole scrape of 500 meters took its event loop
    150-280 ms on the slow machine, about 90 ms since the gateway writes the text itself)."""
    from prometheus_client.parser import text_string_to_metric_families

    query = "&".join(f"name%5B%5D={f}" for f in families)
    with urllib.request.urlopen(f"{url}?{query}", timeout=10) as response:
        text = response.read().decode()
    found = dict.fromkeys(COUNTERS.values(), 0.0)
    names = COUNTERS
    for family in text_string_to_metric_families(text):
        key = names.get(family.name)
        if key is not None:
            found[key] = sum(s.value for s in family.samples
                             if s.name in (family.name, family.name + "_total"))
    return found


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n = args.meters
    broker = Broker(work)
    broker.start()
    sim = Child(f"simulator-{n}", python("simulator.py", "--meters", str(n), "--host", args.host,
                                         "--port", str(args.port)), work)
    sub = gateway = None
    try:
        lines = sim.expect(f"{n - 1} ", 120)
        urls = [line.split()[1] for line in lines[lines.index("ready") + 1:]]
        base = f"bench/outage-{n}"
        sub = Child("subscriber-outage", python(
            "subscriber.py", "--port", str(broker.port), "--filter", f"{base}/+/state",
            "--history", f"{base}/+/history", "--session", f"bench-outage-{time.time_ns()}",
            "--expect", str(n), "--out", str(work / "sub-outage.json")), work)
        sub.expect("ready", 20)
        http_port = free_port()
        metrics = f"http://127.0.0.1:{http_port}/metrics"
        cfg = gateway_config(work, f"outage-{n}", urls, broker.port, base, 1.0, http_port,
                             args.gateway)
        gateway = Child(f"gateway-outage-{n}", [sys.executable, "-m", "gateway", "run", "-c",
                                                str(cfg)], work, env={"BENCH_PW": PASSWORD},
                        stdin=False)
        sub.expect("all", 30 + n / 20)
        time.sleep(args.before)
        sim.send(f"dump {work / 'discard.json'}")
        sim.expect("dumped", 60)
        cpu0 = procstat.cpu_seconds(gateway.pid)
        start = counters(metrics)
        down_at = time.time()
        broker.stop()
        time.sleep(args.outage)
        during = counters(metrics)
        cpu1 = procstat.cpu_seconds(gateway.pid)
        up_at = time.time()
        broker.start()
        settled_at = reconnected_at = None
        deadline = up_at + args.drain_limit
        samples, calm = [], 0
        while time.time() < deadline:
            time.sleep(0.5)
            now = counters(metrics, DRAIN)
            samples.append((round(time.time() - up_at, 1), now["gap_s"], now["queued"]))
            if now["connected"] and reconnected_at is None:
                reconnected_at = time.time()
            # no gap and nothing queued, three samples in a row (a gap shows only once the
            # first states after the outage are acknowledged)
            calm = calm + 1 if now["connected"] and not now["gap_s"] and not now["queued"] else 0
            if calm >= 3 and time.time() - up_at > 3:
                settled_at = time.time()
                break
        time.sleep(args.after)
        end = counters(metrics)
        cpu2 = procstat.cpu_seconds(gateway.pid)
        peak = procstat.status_mb(gateway.pid, "VmHWM")
        path = work / "polls-outage.json"
        sim.send(f"dump {path}")
        sim.expect("dumped", 60)
        arrivals = json.loads(path.read_text())["meters"]
    finally:
        code = gateway.terminate() if gateway is not None else None
        if sub is not None:
            sub.close_input(60)
        sim.close_input()
        broker.stop()
    data = json.loads((work / "sub-outage.json").read_text())
    window = measures.Window(down_at, up_at)
    polled = measures.polls_in(window, arrivals)
    seconds = set(range(math.floor(down_at - args.before) + 1, math.floor(up_at + args.after)))
    covered: dict[str, list[int]] = {f"m{i:04d}": [] for i in range(n)}
    first: dict[tuple[str, int], float] = {}  # (meter, second) -> when it first arrived
    for at, meter, ts, _age in data["arrivals"]:
        covered[meter].append(math.floor(ts))
        first.setdefault((meter, math.floor(ts)), at)
    for at, meter, rows in data["history"]:
        covered[meter].extend(rows)
        for t in rows:
            first[(meter, t)] = min(at, first.get((meter, t), at))
    missing = {m: sorted(seconds - set(ts)) for m, ts in covered.items()}
    twice = sum(sum(1 for t in set(ts) if t in seconds and ts.count(t) > 1)
                for ts in covered.values())
    outage = range(math.floor(down_at), math.floor(up_at) + 1)
    arrived = [first.get((m, t)) for m in covered for t in outage]
    drain_s = None if None in arrived else max(0.0, max(a for a in arrived if a) - up_at)
    return {
        "command": args.command, "machine": procstat.machine(), "meters": n,
        "outage_s": up_at - down_at, "before_s": args.before, "after_s": args.after,
        "polls_due": n * (up_at - down_at), "polls_answered": polled,
        "own": {k: during[k] - start[k] for k in ("polls", "errors", "skipped")},
        "drain_s": drain_s,
        "settled_s": None if settled_at is None else settled_at - up_at,
        "reconnected_s": None if reconnected_at is None else reconnected_at - up_at,
        "drain_samples": samples,
        "dropped": end["dropped"] - start["dropped"],
        "history_rows": end["history_rows"] - start["history_rows"],
        "seconds_checked": len(seconds) * n,
        "missing": sum(len(v) for v in missing.values()),
        "missing_examples": {m: v[:5] for m, v in missing.items() if v},
        "twice": twice,
        "cpu_outage_cores": (cpu1 - cpu0) / (up_at - down_at),
        "cpu_drain_s": cpu2 - cpu1,
        "peak_rss_mb": peak, "exit": code,
    }


def section(r: dict[str, Any]) -> str:
    on_time = 100 * min(r["polls_answered"], r["polls_due"]) / r["polls_due"]
    own = r["own"]
    counted = own["polls"] + own["errors"] + own["skipped"]
    drain = "never: seconds are missing" if r["drain_s"] is None else f"{r['drain_s']:.1f} s"
    settled = ("not within the limit" if r["settled_s"] is None
               else f"{r['settled_s']:.1f} s")
    reconnect = "-" if r["reconnected_s"] is None else f"{r['reconnected_s']:.1f} s"
    rows = [
        BEGIN,
        f"Command: `{r['command']}` ({time.strftime('%Y-%m-%d')}; {r['meters']} meters at 1 s, "
        f"broker down {r['outage_s']:.1f} s)",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in r["machine"].items()),
        "",
        "| measure | value |",
        "|---|---:|",
        f"| polls on schedule during the outage (answered / due) | {on_time:.2f} % |",
        f"| by the gateway's own counters (ok / ok + failed + skipped) | "
        f"{100 * own['polls'] / counted if counted else float('nan'):.2f} % |",
        f"| backlog drained: every meter-second of the outage at the subscriber, after the "
        f"broker returned | {drain} |",
        f"| of it, until the gateway was connected again (its reconnect backoff, 1 s doubling "
        f"to {RETRY_MAX_S:g} s; read every 0.5 s) | {reconnect} |",
        f"| the gateway's own view: no history gap and nothing queued, after the broker "
        f"returned | {settled} |",
        f"| history rows published after the outage | {r['history_rows']:,.0f} |",
        f"| messages the offline queue dropped (state and register values) | "
        f"{r['dropped']:,.0f} |",
        f"| meter-seconds checked (from {r['before_s']:g} s before to {r['after_s']:g} s after) | "
        f"{r['seconds_checked']:,} |",
        f"| meter-seconds missing from state plus history | {r['missing']:,} |",
        f"| meter-seconds that arrived twice (at least once delivery) | {r['twice']:,} |",
        f"| gateway CPU during the outage | {r['cpu_outage_cores']:.2f} cores |",
        f"| gateway CPU from the broker's return to the end | {r['cpu_drain_s']:.1f} s |",
        f"| gateway peak RSS | {r['peak_rss_mb']:.1f} MB |",
        END,
    ]
    return "\n".join(rows)



def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=500)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the broker is down")
    parser.add_argument("--before", type=float, default=10.0,
                        help="seconds measured before the outage (after warm-up)")
    parser.add_argument("--after", type=float, default=10.0,
                        help="seconds after the backlog drained")
    parser.add_argument("--drain-limit", type=float, default=300.0,
                        help="give up waiting for the backlog after this many seconds")
    parser.add_argument("--host", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--gateway", default="{}", type=json.loads, metavar="JSON",
                        help="settings merged into the gateway's configuration")
    parser.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--work", default=None)
    parser.add_argument("--smoke", action="store_true",
                        help="3 meters, a 3 s outage, any free port: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.meters, args.before, args.after, args.port = 3, 3.0, 3.0, 0
        args.outage = min(args.outage, 3.0)
    args.command = shlex.join(["python", "bench/outage.py", *(argv or sys.argv[1:])])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    procstat.raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="outage-bench-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args, work)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    report.write_between(Path(args.results), BEGIN, END, section(result),
                         "# Results")
    print(section(result))
    return 0 if result["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
