"""Prometheus metrics, read at scrape time from the counters the components already keep.

:class:`GatewayCollector` is a custom collector over a :class:`~gateway.observe.view.GatewayView`,
registered in a :class:`CollectorRegistry` of its own (no global registry, no metric calls in
hot paths): the pollers' counters, the meter clients' login counters, the hub's latest
readings, the MQTT connection's and the Modbus server's stats, and the command outcomes.
Labels never carry a secret: meter ids, function and exception codes, action names and
outcome codes only. :func:`merged_exposition` joins the expositions of several worker
processes into one, each series labelled with its worker (the supervisor's ``/metrics``).
This module and the supervisor's endpoint (:mod:`gateway.observe.supervised`) are the
project's only prometheus-client users.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway import __version__
from gateway.observe.view import GatewayView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_number = cast(Callable[[float], str], floatToGoString)  # the format's numbers (untyped there)


def registry_for(view: GatewayView, clock: Callable[[], float] = time.time
                 ) -> CollectorRegistry:
    """A registry of its own holding the collector of ``view``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(view, clock))
    return registry


_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


def wanted_names(query: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The metric families a scrape asks for with ``name[]`` (Prometheus' own query
    parameter, as its client libraries serve it), by family name; a sample name (``..._total``,
    ``..._bucket``) stands for its family. Empty: every family."""
    names = set()
    for key, value in query:
        if key == "name[]" and value:
            names.add(value)
            names.update(value[:-len(s)] for s in _SUFFIXES if value.endswith(s))
    return frozenset(names)


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``, as prometheus-client's
    ``generate_latest`` writes it (byte for byte: a test compares the two).

    Written here because ``generate_latest`` measurably fails a large fleet: it checks and
    escapes every metric and label name of every sample (about 8 µs a sample), so one scrape
    of 500 meters (15,000 samples) took the event loop 125 ms of its 164 ms on the slow 2-core
    machine. The names here are the gateway's own, checked once by the tests; label values
    are escaped as the format says (backslash, newline, double quote)."""
    out: list[str] = []
    for family in registry.collect():
        if not _write(family, out):
            return generate_latest(registry)
    return "".join(out).encode("utf-8")


async def exposition_soon(families: Iterable[Metric]) -> bytes:
    """:func:`exposition` of ``families``, letting the event loop run between two of them
    (a scrape of a large fleet holds no poll for the whole of its text)."""
    chosen = list(families)
    out: list[str] = []
    for family in chosen:
        if not _write(family, out):
            return generate_latest(_Fixed(chosen))
        await asyncio.sleep(0)
    return "".join(out).encode("utf-8")


def _write(family: Metric, out: list[str]) -> bool:
    """Append the text of one family; False for a type or a sample the gateway does not make
    (then ``generate_latest`` writes the whole exposition)."""
    add = out.append
    name, kind = family.name, family.type
    if kind == "counter":
        name += "_total"
    elif kind == "unknown":
        kind = "untyped"
    elif kind not in ("gauge", "histogram"):
        return False
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    add(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
    for s in family.samples:
        if s.timestamp is not None or s.name == family.name + "_created":
            return False
        labels, value = s.labels, _number(s.value)
        if not labels:
            add(f"{s.name} {value}\n")
        elif len(labels) == 1:  # most of them: a meter
            ((key, text),) = labels.items()
            add(f'{s.name}{{{key}="{_label_value(text)}"}} {value}\n')
        else:
            pairs = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
            add(f"{s.name}{{{pairs}}} {value}\n")
    return True


def _label_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
    return value


class _Fixed(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def merged_exposition(parts: Sequence[tuple[str, bytes]], own: Iterable[Metric] = (),
                      label: str = "worker") -> bytes:
    """One exposition of ``own`` and of every ``(value, exposition)`` in ``parts``, each of
    their samples labelled ``label=value``; families of one name are merged. A part that is
    not Prometheus text as the gateway writes it is left out (its worker shows as not
    answering elsewhere).

    The parts are the workers' own ``/metrics``, written by :func:`exposition`: a family's
    ``# HELP`` and ``# TYPE`` lines, then its samples, one a line, no timestamps. So the
    label goes into each sample line as text, checked line by line, instead of a parse into
    samples and a new exposition: for two workers of 500 meters (23,000 lines) 40 ms of CPU
    instead of prometheus-client's 550 ms, with the same bytes out."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(own))
    merged = _families(exposition(registry).decode("utf-8"), None)
    assert merged is not None, "the gateway's own exposition"
    pair = f'{label}="{{}}"'
    for value, text in parts:
        try:
            families = _families(text.decode("utf-8"), pair.format(_label_value(value)))
        except UnicodeDecodeError:
            continue
        if families is None:
            continue
        for name, (header, samples) in families.items():
            entry = merged.setdefault(name, (header, []))
            entry[1].extend(samples)
    return "".join(header + "".join(samples) for header, samples in merged.values()
                   ).encode("utf-8")


# a sample line: name, its labels (if any) and the rest (the value)
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
Families = dict[str, tuple[str, list[str]]]  # name -> (HELP and TYPE lines, sample lines)


def _families(text: str, pair: str | None) -> Families | None:
    """The families of one exposition with ``pair`` (``label="value"``) added to every
    sample's labels; None when a line is not what :func:`exposition` writes."""
    out: Families = {}
    name, samples = "", None
    help_line = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            help_line, name, samples = line, line[7:].partition(" ")[0], None
        elif line.startswith("# TYPE "):
            kind = line[7:].partition(" ")
            if kind[0] != name or not help_line:
                return None
            entry = out.setdefault(name, (f"{help_line}\n{line}\n", []))
            samples, help_line = entry[1], ""
        elif line:
            match = _SAMPLE.fullmatch(line)
            if match is None or samples is None or not match[1].startswith(
                    name.removesuffix("_total")):
                return None
            if pair is None:
                samples.append(line + "\n")
            elif match[2]:
                samples.append(f"{match[1]}{{{match[2]},{pair}}} {match[3]}\n")
            else:
                samples.append(f"{match[1]}{{{pair}}} {match[3]}\n")
    return out


def _columns(families: Sequence[tuple[CounterMetricFamily | GaugeMetricFamily, str]],
             rows: Iterable[object], label: str) -> list[Metric]:
    """Families that each show one field of every row (a status dataclass), labelled with
    the row's ``label`` field: ``(family, field)`` pairs."""
    for row in rows:
        value = [getattr(row, label)]
        for family, key in families:
            family.add_metric(value, getattr(row, key))
    return [family for family, _ in families]


Section = Callable[[], Iterable[Metric | None]]  # None: a good moment to let the loop run
METERS_PER_TURN = 100  # meters added to the families between two turns of the event loop


def _picked(section: Section, names: frozenset[str]) -> Iterable[Metric | None]:
    return (f for f in section() if f is None or f.name in names)


class GatewayCollector(Collector):
    """Every metric of one gateway, built from its live state at each scrape; with ``names``
    only those families, and the sections that hold none of them are not even built (at 500
    meters a full scrape costs 60-100 ms on a slow machine, one of the history and MQTT
    families 5 ms). :meth:`collect_soon` builds them in pieces (the endpoint's way)."""

    def __init__(self, view: GatewayView, clock: Callable[[], float] = time.time,
                 names: Iterable[str] = ()) -> None:
        self._view = view
        self._clock = clock
        self._names = frozenset(names)

    def collect(self) -> Iterable[Metric]:
        for section in self._sections():
            yield from (f for f in section() if f is not None)

    async def collect_soon(self) -> list[Metric]:
        """:meth:`collect`, letting the event loop run between two sections and, within the
        meters' section, after every :data:`METERS_PER_TURN` meters."""
        families: list[Metric] = []
        for section in self._sections():
            for family in section():
                if family is None:
                    await asyncio.sleep(0)
                else:
                    families.append(family)
            await asyncio.sleep(0)
        return families

    def _sections(self) -> Iterable[Section]:
        """The sections that hold a family asked for, each picking those families."""
        names = self._names
        sections: tuple[tuple[tuple[str, ...], Section], ...] = (
            (("egauge_gateway_info",), self._info),
            (("egauge_gateway_loop_",), self._loop),
            (("egauge_meter_", "egauge_register_"), self._meters),
            (("egauge_mqtt_",), self._mqtt),
            (("egauge_modbus_",), self._modbus),
            (("egauge_commands",), self._commands),
            (("egauge_history_",), self._history),
            (("egauge_energy_",), self._energy),
            (("egauge_catchup_",), self._budgets),
            (("egauge_http_",), self._http),
            (("egauge_sparkplug_",), self._sparkplug),
        )
        for prefixes, section in sections:
            if not names:
                yield section
            elif any(n.startswith(prefixes) for n in names):
                yield functools.partial(_picked, section, names)

    def _info(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("egauge_gateway_info", "The gateway's id and version.",
                                 labels=["gateway", "version"])
        info.add_metric([self._view.config.gateway.id, __version__], 1)
        yield info

    def _loop(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "egauge_gateway_loop_late_seconds", "How late the event loop woke a task that "
            "sleeps 0.1 s at a time, added up: its rate is the share of time the loop ran "
            "late (past 0.1 a timed-out poll is not held against its meter).",
            value=self._view.loop_late_s)

    def _meters(self) -> Iterable[Metric | None]:
        now = self._clock()
        polls = CounterMetricFamily("egauge_meter_polls", "Successful polls.", labels=["meter"])
        errors = CounterMetricFamily("egauge_meter_poll_errors", "Failed polls.",
                                     labels=["meter"])
        skipped = CounterMetricFamily("egauge_meter_polls_skipped",
                                      "Poll slots skipped because a poll overran.",
                                      labels=["meter"])
        late = CounterMetricFamily("egauge_meter_poll_late_timeouts",
                                   "Failed polls that timed out while the gateway's own event "
                                   "loop ran late: not held against the meter.",
                                   labels=["meter"])
        latency = HistogramMetricFamily("egauge_meter_poll_duration_seconds",
                                        "Duration of successful polls.", labels=["meter"])
        logins = CounterMetricFamily("egauge_meter_logins", "Successful logins to the meter.",
                                     labels=["meter"])
        refused = CounterMetricFamily("egauge_meter_login_failures",
                                      "Logins the meter refused.", labels=["meter"])
        renewals = CounterMetricFamily("egauge_meter_channel_renewals",
                                       "Connection pools replaced after a cancelled request "
                                       "(a timeout, or the end of a backfill's slot).",
                                       labels=["meter"])
        online = GaugeMetricFamily("egauge_meter_online",
                                   "1 while the meter answers, 0 while offline or not yet "
                                   "polled.", labels=["meter"])
        age = GaugeMetricFamily("egauge_meter_data_age_seconds",
                                "Age of the latest reading (meter timestamp).", labels=["meter"])
        changes = CounterMetricFamily("egauge_register_changes",
                                      "Registers seen renamed or retyped on the meter.",
                                      labels=["meter"])
        for i, meter in enumerate(self._view.meters()):
            if i and not i % METERS_PER_TURN:
                yield None
            stats, label = meter.stats, [meter.config.id]
            changes.add_metric(label, meter.register_changes)
            if stats is None:
                continue
            polls.add_metric(label, stats.polls_ok)
            errors.add_metric(label, stats.polls_failed)
            skipped.add_metric(label, stats.polls_skipped)
            late.add_metric(label, stats.late_timeouts)
            latency.add_metric(label, [(_le(b), n) for b, n in stats.latency.cumulative()],
                               stats.latency.sum)
            online.add_metric(label, 1 if stats.online else 0)
            reading = meter.state.reading
            if reading is not None:
                age.add_metric(label, max(0.0, now - reading.ts))
            if meter.logins is not None:
                logins.add_metric(label, meter.logins)
                refused.add_metric(label, meter.login_failures or 0)
            if meter.channel_renewals is not None:
                renewals.add_metric(label, meter.channel_renewals)
        yield from (polls, errors, skipped, late, latency, logins, refused, renewals, online,
                    age, changes)

    def _mqtt(self) -> Iterable[Metric]:
        stats = self._view.mqtt
        if stats is None:
            return
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
        stats = self._view.modbus
        if stats is None:
            return
        yield GaugeMetricFamily("egauge_modbus_listening", "1 while the server listens.",
                                value=1 if self._view.modbus_listening else 0)
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
                                  "Silent or trickling clients dropped at the connection "
                                  "limit.", value=stats.evicted)
        for name, doc, value in (
            ("egauge_modbus_connections_refused_per_address",
             "Connections refused at the per-address limit.", stats.refused_per_address),
            ("egauge_modbus_connections_denied",
             "Connections closed at once: the address is outside modbus.allow_from.",
             stats.denied),
            ("egauge_modbus_frame_timeouts",
             "Connections closed for a frame not completed within modbus.frame_timeout_s.",
             stats.frame_timeouts),
            ("egauge_modbus_frames_invalid",
             "Connections closed for a frame with a bad protocol id or length.",
             stats.frames_invalid),
        ):
            yield CounterMetricFamily(name, doc, value=value)

    def _commands(self) -> Iterable[Metric]:
        counts = self._view.command_counts
        if counts is None:
            return
        family = CounterMetricFamily("egauge_commands", "Command requests by outcome.",
                                     labels=["meter", "action", "outcome"])
        for (meter, action, outcome), n in sorted(counts.items()):
            family.add_metric([meter, action, outcome], n)
        yield family

    def _history(self) -> Iterable[Metric]:
        history = self._view.history()
        if history is None:
            return
        rows = CounterMetricFamily("egauge_history_rows_published",
                                   "History rows published after gaps.", labels=["meter"])
        given_up = CounterMetricFamily("egauge_history_given_up_seconds",
                                       "Seconds of gaps older than the look-back, not filled.",
                                       labels=["meter"])
        pending = GaugeMetricFamily("egauge_history_gap_seconds",
                                    "Span of the oldest gap still to fill.", labels=["meter"])
        for status in sorted(history, key=lambda h: h.meter):
            rows.add_metric([status.meter], status.published_rows)
            given_up.add_metric([status.meter], status.given_up_s)
            pending.add_metric([status.meter], status.gap_s)
        yield from (rows, given_up, pending)

    def _energy(self) -> Iterable[Metric]:
        energy = self._view.energy()
        if energy is None:
            return
        families = (
            (CounterMetricFamily("egauge_energy_coarse_rows", "Rows beyond the meter's "
                                 "1-second level counted by their sign (resolution lost).",
                                 labels=["meter"]), "coarse_rows"),
            (CounterMetricFamily("egauge_energy_coarse_seconds", "Seconds those coarse rows "
                                 "span.", labels=["meter"]), "coarse_seconds"),
            (CounterMetricFamily("egauge_energy_discontinuities", "Steps of a counter not "
                                 "counted: a cumulative reset, a moved epoch.",
                                 labels=["meter"]), "discontinuities"),
            (CounterMetricFamily("egauge_energy_requests", "Requests to the meter's database "
                                 "for the energy counters.", labels=["meter"]), "requests"),
            (CounterMetricFamily("egauge_energy_request_failures", "Of those, the ones that "
                                 "failed.", labels=["meter"]), "failed_requests"),
            (GaugeMetricFamily("egauge_energy_lag_seconds", "How far the energy counters "
                               "stand behind the newest reading.", labels=["meter"]), "lag_s"),
        )
        rows = sorted(energy, key=lambda status: status.meter)
        yield from _columns(families, rows, "meter")

    def _budgets(self) -> Iterable[Metric]:
        budgets = self._view.budgets()
        if not budgets:
            return
        families = (
            (GaugeMetricFamily("egauge_catchup_limit", "Reads of the meters' databases "
                               "(history backfill, energy gap reads) a service may run at "
                               "once at most.", labels=["service"]), "limit"),
            (GaugeMetricFamily("egauge_catchup_allowed", "Of those, allowed now: halved in "
                               "each second in which live polls lapsed or the event loop ran "
                               "late, one more in each calm second.", labels=["service"]),
             "allowed"),
            (GaugeMetricFamily("egauge_catchup_in_use", "Reads of the meters' databases "
                               "running now.", labels=["service"]), "in_use"),
            (CounterMetricFamily("egauge_catchup_cuts", "Seconds that halved the budget.",
                                 labels=["service"]), "cuts"),
        )
        yield from _columns(families, budgets, "service")

    def _sparkplug(self) -> Iterable[Metric]:
        spb = self._view.sparkplug
        if spb is None:
            return
        yield GaugeMetricFamily("egauge_sparkplug_connected",
                                "1 while the Edge Node's session is up.",
                                value=1 if spb.connected else 0)
        for name, doc, value in (
            ("egauge_sparkplug_births", "NBIRTHs sent (rebirths included).", spb.births),
            ("egauge_sparkplug_rebirths", "Rebirths asked for by NCMD.", spb.rebirths),
            ("egauge_sparkplug_sent", "Sparkplug messages sent.", spb.sent),
            ("egauge_sparkplug_malformed", "NCMD, DCMD or STATE payloads that could not be "
             "read.", spb.malformed),
            ("egauge_sparkplug_commands", "DCMD writes answered by the command router.",
             spb.commands),
        ):
            yield CounterMetricFamily(name, doc, value=value)

    def _http(self) -> Iterable[Metric]:
        stats = self._view.http
        if stats is None:
            return
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
