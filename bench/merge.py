"""The supervisor's merge of its workers' /metrics, timed against prometheus-client doing it.

    python bench/merge.py [--meters 500] [--workers 2] [--repeat 3]

Builds each worker's exposition of the per-meter families (counters, gauges, the poll
duration histogram) with the gateway's own writer, then times, in CPU seconds (best of
``--repeat``), ``gateway.observe.merged_exposition`` and the library's way: parse each part
with ``text_string_to_metric_families``, label every sample, write it all with
``generate_latest``. Both must give the same bytes; the figures go to stdout with the
command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gateway.observe import exposition, merged_exposition

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Fixed(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Sequence[Metric]:
        return self.families


def _registry(families: Sequence[Metric]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return registry


def worker(index: int, meters: int) -> bytes:
    families: list[Metric] = []
    names = [f"w{index}m{i:04d}" for i in range(meters)]
    for name in ("polls", "poll_errors", "polls_skipped", "logins", "login_failures",
                 "channel_renewals", "register_changes"):
        counter = CounterMetricFamily(f"egauge_meter_{name}", "A counter.", labels=["meter"])
        for i, meter in enumerate(names):
            counter.add_metric([meter], i)
        families.append(counter)
    for name in ("online", "data_age_seconds"):
        gauge = GaugeMetricFamily(f"egauge_meter_{name}", "A gauge.", labels=["meter"])
        for meter in names:
            gauge.add_metric([meter], 1.5)
        families.append(gauge)
    duration = HistogramMetricFamily("egauge_meter_poll_duration_seconds", "Durations.",
                                     labels=["meter"])
    for i, meter in enumerate(names):
        duration.add_metric([meter], [(str(b), i) for b in BUCKETS] + [("+Inf", i)], 0.5 * i)
    families.append(duration)
    return exposition(_registry(families))


def library_merge(parts: Sequence[tuple[str, bytes]]) -> bytes:
    families: dict[str, Metric] = {}
    for value, text in parts:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
            for s in family.samples:
                merged.add_sample(s.name, {**s.labels, "worker": value}, s.value, s.timestamp)
    return generate_latest(_registry(list(families.values())))


def best(merge: Callable[[Sequence[tuple[str, bytes]]], bytes],
         parts: Sequence[tuple[str, bytes]], repeat: int) -> tuple[float, bytes]:
    times, out = [], b""
    for _ in range(repeat):
        started = time.process_time()
        out = merge(parts)
        times.append(time.process_time() - started)
    return min(times), out


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--meters", type=int, default=500, help="meters per worker")
    options.add_argument("--workers", type=int, default=2)
    options.add_argument("--repeat", type=int, default=3)
    args = options.parse_args()
    parts = [(str(w), worker(w, args.meters)) for w in range(args.workers)]
    lines = sum(text.count(b"\n") for _, text in parts)
    ours, merged = best(merged_exposition, parts, args.repeat)
    theirs, reference = best(library_merge, parts, args.repeat)
    print(f"Command: `python bench/merge.py {' '.join(sys.argv[1:])}`".rstrip("` ") + "`")
    print(f"{args.workers} workers x {args.meters} meters, {lines} lines in, "
          f"{len(merged)} bytes out; CPU, best of {args.repeat}:")
    print(f"- merged_exposition: {ours * 1000:.0f} ms")
    print(f"- prometheus-client (parse, label, generate_latest): {theirs * 1000:.0f} ms")
    print(f"- same bytes: {'yes' if merged == reference else 'NO'}")
    return 0 if merged == reference else 1


if __name__ == "__main__":
    sys.exit(main())
