"""Prometheus metrics, read at scrape time from the counters the components already keep.

:class:`GatewayCollector` is a custom collector for one :class:`~gateway.app.App`, registered
in a :class:`CollectorRegistry` of its own (no global registry, no metric calls in hot paths):
the pollers' :class:`~gateway.poller.PollStats`, the meter clients' login counters, the hub's
latest readings, the MQTT connection's and the Modbus server's stats, and the command
outcomes counted by :class:`CommandTally`. Labels never carry a secret: meter ids, function
and exception codes, action names and outcome codes only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.actions import ACTIONS

if TYPE_CHECKING:
    from gateway.app import App

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
AuditSink = Callable[[Mapping[str, Any]], Awaitable[None] | None]


class CommandTally:
    """The command router's audit sink: counts each request's outcome per meter and action
    (unknown action names count as ``other``, so a stranger cannot grow the label set) and
    hands the event on to ``forward``."""

    def __init__(self, forward: AuditSink | None = None) -> None:
        self.forward = forward
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, event: Mapping[str, Any]) -> Awaitable[None] | None:
        action = str(event.get("action", ""))
        key = (str(event.get("meter", "")), action if action in ACTIONS else "other",
               str(event.get("outcome", "")))
        self.counts[key] += 1
        return self.forward(event) if self.forward is not None else None


def registry_for(app: App, clock: Callable[[], float] = time.time) -> CollectorRegistry:
    """A registry of its own holding the collector of ``app``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(app, clock))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``."""
    return generate_latest(registry)


class GatewayCollector(Collector):
    """Every metric of one gateway, built from its live state at each scrape."""

    def __init__(self, app: App, clock: Callable[[], float] = time.time) -> None:
        self._app = app
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        app = self._app
        info = GaugeMetricFamily("egauge_gateway_info", "The gateway's id and version.",
                                 labels=["gateway", "version"])
        info.add_metric([app.config.gateway.id, __version__], 1)
        yield info
        yield from self._meters()
        yield from self._mqtt()
        yield from self._modbus()
        yield from self._commands()
        yield from self._history()
        yield from self._http()

    def _meters(self) -> Iterable[Metric]:
        app, now = self._app, self._clock()
        polls = CounterMetricFamily("egauge_meter_polls", "Successful polls.", labels=["meter"])
        errors = CounterMetricFamily("egauge_meter_poll_errors", "Failed polls.",
                                     labels=["meter"])
        skipped = CounterMetricFamily("egauge_meter_polls_skipped",
                                      "Poll slots skipped because a poll overran.",
                                      labels=["meter"])
        latency = HistogramMetricFamily("egauge_meter_poll_duration_seconds",
                                        "Duration of successful polls.", labels=["meter"])
        logins = CounterMetricFamily("egauge_meter_logins", "Successful logins to the meter.",
                                     labels=["meter"])
        refused = CounterMetricFamily("egauge_meter_login_failures",
                                      "Logins the meter refused.", labels=["meter"])
        online = GaugeMetricFamily("egauge_meter_online",
                                   "1 while the meter answers, 0 while offline or not yet "
                                   "polled.", labels=["meter"])
        age = GaugeMetricFamily("egauge_meter_data_age_seconds",
                                "Age of the latest reading (meter timestamp).", labels=["meter"])
        for meter, poller in app.pollers.items():
            stats, label = poller.stats, [meter]
            polls.add_metric(label, stats.polls_ok)
            errors.add_metric(label, stats.polls_failed)
            skipped.add_metric(label, stats.polls_skipped)
            latency.add_metric(label, [(_le(b), n) for b, n in stats.latency.cumulative()],
                               stats.latency.sum)
            online.add_metric(label, 1 if stats.online else 0)
            reading = app.hub.meter(meter).reading
            if reading is not None:
                age.add_metric(label, max(0.0, now - reading.ts))
            client = app.clients.get(meter)
            count = getattr(client, "logins", None)
            if isinstance(count, int):
                logins.add_metric(label, count)
                refused.add_metric(label, int(getattr(client, "login_failures", 0)))
        yield from (polls, errors, skipped, latency, logins, refused, online, age)

    def _mqtt(self) -> Iterable[Metric]:
        if self._app.mqtt is None:
            return
        stats = self._app.mqtt.connection.stats
        yield GaugeMetricFamily("egauge_mqtt_connected", "1 while connected to the broker.",
                                value=1 if stats.connected else 0)
        for name, doc, value in (
            ("egauge_mqtt_connects", "Sessions established with the broker.", stats.connects),
            ("egauge_mqtt_connect_failures", "Failed connection attempts.",
             stats.connect_failures),
            ("egauge_mqtt_published", "Messages handed to the broker.", stats.published),
            ("egauge_mqtt_dropped", "Messages dropped from the full offline queue.",
             stats.dropped),
            ("egauge_mqtt_received", "Messages received (command requests, ...).",
             stats.received),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("egauge_mqtt_queued", "Messages waiting for the broker.",
                                value=stats.queued)

    def _modbus(self) -> Iterable[Metric]:
        modbus = self._app.modbus
        if modbus is None:
            return
        stats = modbus.stats
        yield GaugeMetricFamily("egauge_modbus_listening", "1 while the server listens.",
                                value=1 if modbus.listening else 0)
        requests = CounterMetricFamily("egauge_modbus_requests",
                                       "Requests answered, by function code.",
                                       labels=["function"])
        for fc, n in sorted(stats.functions.items()):
            requests.add_metric([str(fc)], n)
        yield requests
        exceptions = CounterMetricFamily("egauge_modbus_exceptions",
                                         "Exception responses, by function and exception code.",
                                         labels=["function", "code"])
        for (fc, code), n in sorted(stats.function_exceptions.items()):
            exceptions.add_metric([str(fc), f"0x{code:02X}"], n)
        yield exceptions
        yield CounterMetricFamily("egauge_modbus_unanswered",
                                  "Requests for unknown unit ids left unanswered.",
                                  value=stats.unanswered)
        yield GaugeMetricFamily("egauge_modbus_connections", "Open client connections.",
                                value=stats.connections)
        yield CounterMetricFamily("egauge_modbus_connections_refused",
                                  "Connections refused at the connection limit.",
                                  value=stats.refused)
        yield CounterMetricFamily("egauge_modbus_connections_evicted",
                                  "Silent clients dropped at the connection limit.",
                                  value=stats.evicted)

    def _commands(self) -> Iterable[Metric]:
        tally = self._app.command_tally
        if tally is None:
            return
        family = CounterMetricFamily("egauge_commands", "Command requests by outcome.",
                                     labels=["meter", "action", "outcome"])
        for (meter, action, outcome), n in sorted(tally.counts.items()):
            family.add_metric([meter, action, outcome], n)
        yield family


    def _history(self) -> Iterable[Metric]:
        history = self._app.history
        if history is None:
            return
        rows = CounterMetricFamily("egauge_history_rows_published",
                                   "History rows published after gaps.", labels=["meter"])
        given_up = CounterMetricFamily("egauge_history_given_up_seconds",
                                       "Seconds of gaps older than the look-back, not filled.",
                                       labels=["meter"])
        pending = GaugeMetricFamily("egauge_history_gap_seconds",
                                    "Span of the oldest gap still to fill.", labels=["meter"])
        for meter in sorted(self._app.pollers):
            backfill = history.backfill(meter)
            if backfill is None:
                continue
            rows.add_metric([meter], backfill.published_rows)
            given_up.add_metric([meter], backfill.given_up_s)
            gap = backfill.coverage.gap()
            pending.add_metric([meter], 0 if gap is None else gap[1] - gap[0])
        yield from (rows, given_up, pending)

    def _http(self) -> Iterable[Metric]:
        if self._app.http is None:
            return
        stats = self._app.http.stats
        yield GaugeMetricFamily("egauge_http_connections", "Open connections to this endpoint.",
                                value=stats.connections)
        for name, doc, value in (
            ("egauge_http_connections_accepted", "Connections accepted.", stats.accepted),
            ("egauge_http_connections_refused", "Connections refused, every one busy.",
             stats.refused),
            ("egauge_http_connections_evicted", "Waiting connections closed at the limit.",
             stats.evicted),
            ("egauge_http_requests", "Requests answered.", stats.answered),
            ("egauge_http_handler_errors", "Requests answered 500 by a failed handler.",
             stats.handler_errors),
            ("egauge_http_reads_paused", "Times a connection was not read (backpressure).",
             stats.paused),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        rejected = CounterMetricFamily("egauge_http_rejected",
                                       "Requests refused by a limit or as malformed.",
                                       labels=["status"])
        for status, n in sorted(stats.rejected.items()):
            rejected.add_metric([str(status)], n)
        yield rejected
        timeouts = CounterMetricFamily("egauge_http_timeouts",
                                       "Connections closed by a timeout.", labels=["kind"])
        for kind, n in sorted(stats.timeouts.items()):
            timeouts.add_metric([kind], n)
        yield timeouts


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it (``0.5``, ``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
