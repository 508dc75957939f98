"""The gateway's own writer of the Prometheus text format against prometheus-client's
``generate_latest``, the reference: the same bytes for every family type and value the
gateway makes, label values that need escaping included."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from gateway.observe import exposition
from tests.support.prometheus import registry


def test_counters_gauges_and_histograms_come_out_as_generate_latest_writes_them() -> None:
    counter = CounterMetricFamily("egauge_x", "Counted \\ things,\nover lines.",
                                  labels=["meter", "action"])
    counter.add_metric(["main", "reboot"], 3)
    counter.add_metric(['sub "2"', "a\\b\nc"], 12345678901234.0)
    gauge = GaugeMetricFamily("egauge_y", "A gauge.", labels=["meter"])
    for i, v in enumerate((0.0, -1.5, 1e-9, 123456789.0, math.inf, -math.inf, math.nan, 7)):
        gauge.add_metric([f"m{i}"], v)
    plain = GaugeMetricFamily("egauge_z", "No labels.", value=1)
    histogram = HistogramMetricFamily("egauge_h", "Durations.", labels=["meter"])
    histogram.add_metric(["main"], [("0.005", 1), ("0.5", 4), ("+Inf", 9)], 2.25)
    empty = CounterMetricFamily("egauge_none", "Nothing counted yet.", labels=["meter"])
    reg = registry(counter, gauge, plain, histogram, empty)
    assert exposition(reg) == generate_latest(reg)


def test_a_type_the_gateway_does_not_make_is_left_to_generate_latest() -> None:
    info = InfoMetricFamily("egauge_build", "Build.", value={"version": "1"})
    created = CounterMetricFamily("egauge_c", "With a creation time.", labels=["m"], created=5.0)
    created.add_metric(["a"], 1, created=5.0)
    for reg in (registry(info), registry(created)):
        assert exposition(reg) == generate_latest(reg)
