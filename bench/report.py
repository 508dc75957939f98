"""The fleet benchmark's results as Markdown (between markers in RESULTS.md)."""

from __future__ import annotations

import argparse
import datetime
import math
from collections.abc import Callable
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


def _ratios(phases: list[Phase]) -> list[str]:
    rows = ["| meters | gateway / floor | gateway / peer |", "|---:|---:|---:|"]
    for n in sorted({p.meters for p in phases}):
        by = {p.subject: p.cpu_ms_per_poll for p in phases if p.meters == n}
        gateway = by.get("gateway")
        cells = [_f(gateway / by[s]) + "x" if gateway and by.get(s) else "-"
                 for s in ("floor", "peer")]
        rows.append(f"| {n} | {cells[0]} | {cells[1]} |")
    return rows


Check = tuple[str, Callable[[dict[str, Phase]], float | None], float, bool, str]

CHECKS: list[Check] = [
    ("polls on schedule", lambda s: 100 * s["gateway"].on_schedule_ratio, 99.0, True, "%"),
    ("gateway cores", lambda s: s["gateway"].cores, 1.0, False, "cores"),
    ("gateway CPU per meter-poll", lambda s: s["gateway"].cpu_ms_per_poll, 2.0, False, "ms"),
    ("latency p99", lambda s: s["gateway"].latency_ms[1] if s["gateway"].latency_ms else None,
     50.0, False, "ms"),
    ("peak RSS", lambda s: s["gateway"].peak_rss_mb, 150.0, False, "MB"),
    ("gateway / floor", lambda s: s["gateway"].cpu_ms_per_poll / s["floor"].cpu_ms_per_poll,
     1.5, False, "x"),
    ("gateway / peer", lambda s: s["gateway"].cpu_ms_per_poll / s["peer"].cpu_ms_per_poll,
     1.0, False, "x"),
]


def _targets(phases: list[Phase]) -> list[str]:
    sizes = sorted({p.meters for p in phases})
    n = TARGET_METERS if TARGET_METERS in sizes else sizes[-1]
    subjects = {p.subject: p for p in phases if p.meters == n}
    rows = [f"Targets at {n} meters:", "",
            "| target | limit | measured | verdict |", "|---|---:|---:|---|"]
    for name, measure, limit, at_least, unit in CHECKS:
        try:
            value = measure(subjects)
        except (KeyError, ZeroDivisionError):
            continue
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
        "CPU per meter-poll, gateway against the others:",
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
    generated = section(args, machine, phases)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + generated + rest.split(END, 1)[1]
    else:
        text = (text or "# Fleet benchmark results\n\n") + generated + "\n"
    path.write_text(text, encoding="utf-8")
