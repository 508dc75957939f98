"""Turning one phase's raw records into the benchmark's figures."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(slots=True)
class Phase:
    """The figures of one subject (gateway, floor or peer) for one fleet size."""

    subject: str
    meters: int
    seconds: float
    polls_due: float
    polls: int  # requests with time= the meters answered within the window
    cpu_s: float
    peak_rss_mb: float
    registers: int  # register values per poll
    on_schedule: int | None = None  # published within one interval of the poll
    latency_ms: tuple[float, float] | None = None  # p50, p99: poll -> subscriber
    inside_ms: tuple[float, float] | None = None  # p50, p99: poll -> state built (gateway)
    age_ms: tuple[float, float] | None = None  # p50, p99: meter timestamp -> subscriber
    counters: dict[str, float] | None = None  # the gateway's own, over the window
    sim_cores: float = 0.0
    broker_cores: float = 0.0
    other_cores: float = 0.0  # the rest of the machine (other work on a shared machine)
    unmatched: int = 0
    # requests other than polls that the meters answered in the window, by kind (logins,
    # history reads, ...): a steady state has none
    other_requests: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def cpu_ms_per_poll(self) -> float:
        return 1000 * self.cpu_s / self.polls if self.polls else float("nan")

    @property
    def cpu_us_per_value(self) -> float:
        return 1000 * self.cpu_ms_per_poll / self.registers

    @property
    def mqtt_msgs_per_s(self) -> float | None:
        if self.counters is not None:
            return self.counters["egauge_mqtt_published"] / self.seconds
        return self.polls / self.seconds if self.subject == "floor" else None

    @property
    def counted_ratio(self) -> float | None:
        """Successful polls / poll slots by the gateway's own counters."""
        if self.counters is None:
            return None
        ok, failed, skipped = (self.counters[k] for k in COUNTERS[:3])
        return ok / (ok + failed + skipped) if ok + failed + skipped else None

    @property
    def on_schedule_ratio(self) -> float:
        done = self.polls if self.on_schedule is None else self.on_schedule
        return min(done, self.polls_due) / self.polls_due if self.polls_due else float("nan")


def percentiles(values: list[float], *qs: float) -> tuple[float, ...]:
    """Nearest-rank percentiles (``q`` in 0..100) of ``values``."""
    if not values:
        return tuple(float("nan") for _ in qs)
    ordered = sorted(values)
    n = len(ordered)
    return tuple(ordered[min(n - 1, max(0, math.ceil(q / 100 * n) - 1))] for q in qs)


def p50_p99(values: list[float]) -> tuple[float, float]:
    p50, p99 = percentiles(values, 50, 99)
    return p50, p99


def polls_in(window: Window, arrivals: list[list[float]]) -> int:
    return sum(1 for meter in arrivals for t in meter if t in window)


@dataclass(slots=True)
class Deliveries:
    """State messages received in a window, matched to the polls that fetched them."""

    in_time: int = 0  # within one interval of the poll
    unmatched: int = 0
    latencies: list[float] = field(default_factory=list)  # ms, poll -> subscriber
    ages: list[float] = field(default_factory=list)  # ms, meter timestamp -> subscriber
    inside: list[float] = field(default_factory=list)  # ms, poll -> the gateway built it


def deliveries(window: Window, received: list[tuple[float, str, float, float | None]],
               arrivals: list[list[float]], interval: float) -> Deliveries:
    """Match each message received in the window to the poll that fetched it (the meter's
    newest ``time=`` request before the message whose second is the payload's ``ts``)."""
    ordered = [sorted(a) for a in arrivals]
    out = Deliveries()
    for at, meter, ts, age in received:
        if at not in window:
            continue
        polls = ordered[int(meter.lstrip("m"))]
        k = bisect.bisect_right(polls, at) - 1
        if k < 0 or not -0.05 <= polls[k] - int(ts) < 1.05:
            out.unmatched += 1
            continue
        latency = at - polls[k]
        out.latencies.append(1000 * latency)
        out.ages.append(1000 * (at - ts))
        if age is not None:
            out.inside.append(1000 * (ts + age - polls[k]))
        if latency <= interval:
            out.in_time += 1
    return out


COUNTERS = ("egauge_meter_polls", "egauge_meter_poll_errors", "egauge_meter_polls_skipped",
            "egauge_mqtt_published")


def gateway_counters(text: str) -> dict[str, float]:
    """The gateway's own counters from its ``/metrics`` page, summed over the meters."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = dict.fromkeys(COUNTERS, 0.0)
    for family in text_string_to_metric_families(text):
        if family.name in totals:
            totals[family.name] = sum(s.value for s in family.samples
                                      if s.name == family.name + "_total")
    return totals
