"""The fleet benchmark's results as Markdown (between markers in RESULTS.md)."""

from __future__ import annotations

import argparse
import datetime
import math
from pathlib import Path

from measures import Phase

BEGIN, END = "<!-- fleet:begin -->", "<!-- fleet:end -->"
TARGET_METERS = 500


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _pair(values: tuple[float, float] | None, digits: int = 1) -> str:
    return "-" if values is None else f"{_f(values[0], digits)} / {_f(values[1], digits)}"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{_f(100 * ratio)} %"


def one_line(p: Phase) -> str:
    """A progress line for the terminal."""
    return (f"{p.meters:>5} {p.subject:<8} on schedule {100 * p.on_schedule_ratio:6.2f} %  "
            f"{p.cpu_ms_per_poll:6.3f} ms/poll  {p.cores:5.2f} cores  "
            f"RSS {p.peak_rss_mb:6.1f} MB  latency p50/p99 {_pair(p.latency_ms)} ms "
            f"(to publish {_pair(p.inside_ms)})  {p.note}")


def _other_requests(phases: list[Phase]) -> list[str]:
    """What the meters answered in the windows besides the polls (logins, catch-up reads)."""
    rows = [f"- {p.meters} meters, {p.subject}: " + ", ".join(
        f"{n} × `{kind}`" for kind, n in sorted(p.other_requests.items()))
        for p in phases if p.other_requests]
    return ["Requests besides the polls in the measured windows:", "", *rows, ""] if rows \
        else ["Requests besides the polls in the measured windows: none.", ""]


def _table(phases: list[Phase]) -> list[str]:
    rows = [
        "| meters | subject | on schedule | by own counters | polls/s | CPU ms / meter-poll "
        "| CPU µs / value | cores | peak RSS MB | latency p50 / p99 ms "
        "| of it poll to publish p50 / p99 ms | age p50 / p99 ms "
        "| MQTT msgs/s | simulator cores | broker cores | other load, cores | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in phases:
        rows.append(
            f"| {p.meters} | {p.subject} | {_f(100 * p.on_schedule_ratio)} % "
            f"| {_percent(p.counted_ratio)} | {_f(p.polls / p.seconds, 1)} "
            f"| {_f(p.cpu_ms_per_poll, 3)} | {_f(p.cpu_us_per_value, 1)} | {_f(p.cores)} "
            f"| {_f(p.peak_rss_mb, 1)} "
            f"| {_pair(p.latency_ms)} | {_pair(p.inside_ms)} | {_pair(p.age_ms, 0)} "
            f"| {_f(p.mqtt_msgs_per_s, 0)} "
            f"| {_f(p.sim_cores)} | {_f(p.broker_cores)} | {_f(p.other_cores)} | {p.note} |")
    return rows


GATEWAYS = ("gateway", "workers")  # the subjects the ratios are about (and every variant)
RATIO_LIMITS = {"floor": 1.2, "peer": 0.8}  # CPU per meter-poll, at every fleet size
RSS_SLOPE_MB = 0.1  # peak RSS growth per meter
WORKERS_METERS = 1000  # the workers subject's target size (or the largest measured)


def _is_gateway(subject: str) -> bool:
    return subject not in ("floor", "peer")


def _ratios(phases: list[Phase]) -> list[str]:
    rows = ["| meters | subject | / floor | / peer |", "|---:|---|---:|---:|"]
    for n in sorted({p.meters for p in phases}):
        by = {p.subject: p.cpu_ms_per_poll for p in phases if p.meters == n}
        for subject, cpu in by.items():
            if not _is_gateway(subject):
                continue
            cells = [_f(cpu / by[s]) + "x" if by.get(s) and not math.isnan(by[s]) else "-"
                     for s in ("floor", "peer")]
            rows.append(f"| {n} | {subject} | {cells[0]} | {cells[1]} |")
    return rows


def rss_slope(phases: list[Phase], subject: str = "gateway") -> float | None:
    """MB of peak RSS per meter: the least-squares slope over the fleet sizes measured."""
    return slope([(p.meters, p.peak_rss_mb) for p in phases if p.subject == subject])


def slope(points: list[tuple[int, float]]) -> float | None:
    """The least-squares growth of y per x (None for fewer than two distinct x)."""
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


Target = tuple[str, float | None, float, bool, str]  # name, measured, limit, at least, unit


def targets(phases: list[Phase]) -> list[Target]:
    """The issue's targets, each with what was measured (None: not measured in this run)."""
    sizes = sorted({p.meters for p in phases})
    at = {(p.meters, p.subject): p for p in phases}
    found: list[Target] = []
    for n in sizes:
        gateway = at.get((n, "gateway"))
        for other, limit in RATIO_LIMITS.items():
            base = at.get((n, other))
            if gateway is not None and base is not None and base.cpu_ms_per_poll:
                found.append((f"{n} meters: gateway / {other} CPU per meter-poll",
                              gateway.cpu_ms_per_poll / base.cpu_ms_per_poll, limit, False, "x"))
    n = TARGET_METERS if TARGET_METERS in sizes else sizes[-1]
    gateway = at.get((n, "gateway"))
    if gateway is not None:
        found.append((f"{n} meters: gateway polls on schedule",
                      100 * gateway.on_schedule_ratio, 99.0, True, "%"))
        found.append((f"{n} meters: gateway latency p99",
                      gateway.latency_ms[1] if gateway.latency_ms else None, 20.0, False, "ms"))
    found.append(("gateway peak RSS growth per meter", rss_slope(phases), RSS_SLOPE_MB, False,
                  "MB"))
    n = WORKERS_METERS if WORKERS_METERS in sizes else sizes[-1]
    workers = at.get((n, "workers"))
    if workers is not None:
        found.append((f"{n} meters: workers polls on schedule",
                      100 * workers.on_schedule_ratio, 99.0, True, "%"))
    return found


def _targets(phases: list[Phase]) -> list[str]:
    rows = ["Targets:", "", "| target | limit | measured | verdict |", "|---|---:|---:|---|"]
    for name, value, limit, at_least, unit in targets(phases):
        if value is None or math.isnan(value):
            continue
        met = value >= limit if at_least else value <= limit
        miss = "" if met else f" by {_f(abs(value - limit))} {unit}"
        sign = ">=" if at_least else "<="
        rows.append(f"| {name} | {sign} {_f(limit)} {unit} | {_f(value)} {unit} "
                    f"| {'met' if met else 'missed' + miss} |")
    return rows


def section(args: argparse.Namespace, machine: dict[str, str], phases: list[Phase]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        BEGIN,
        f"Command: `{args.command}` ({today}; {args.duration:g} s measured per subject after "
        f"warm-up and {args.settle:g} s settling; poll interval {args.interval:g} s)",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        *_table(phases),
        "",
        *_other_requests(phases),
        "CPU per meter-poll against the floor and the peer (same run, side by side):",
        "",
        *_ratios(phases),
        "",
        *_targets(phases),
        END,
    ]
    return "\n".join(lines)


def write(path: Path, args: argparse.Namespace, machine: dict[str, str],
          phases: list[Phase]) -> None:
    """Replace the generated part of ``path`` (create the page when it does not exist)."""
    write_between(path, BEGIN, END, section(args, machine, phases), "# Fleet benchmark results")


def write_between(path: Path, begin: str, end: str, generated: str, title: str) -> None:
    """Put ``generated`` (which starts with ``begin`` and ends with ``end``) in place of the
    page's part between those markers, or at its end (a new page starts with ``title``)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + generated + rest.split(end, 1)[1]
    else:
        text = (text or f"{title}\n\n") + generated + "\n"
    path.write_text(text, encoding="utf-8")
