"""Observability: the HTTP endpoint (``/healthz``, ``/readyz``, ``/metrics``, the status page)
and what it shows. Every view reads a :class:`GatewayView`, never the app itself; the
endpoint of a gateway with worker processes reads a :class:`SupervisorView` and its workers'
own endpoints.

Modules: ``view`` (the protocols and data shown), ``health`` (readiness), ``status`` (the
HTML page), ``panels`` (its per-meter health line and charts), ``plot`` (SVG charts),
``trend`` (the hub sink that remembers each meter's recent power), ``metrics``
(Prometheus), ``endpoint`` (the routes on the HTTP server), ``supervised`` (the
supervisor's endpoint over its workers)."""

from gateway.observe.endpoint import HttpEndpoint
from gateway.observe.health import Readiness, readiness
from gateway.observe.metrics import exposition, merged_exposition, registry_for
from gateway.observe.status import render_status
from gateway.observe.supervised import (
    RelayCounters,
    SupervisorEndpoint,
    SupervisorView,
    WorkerStatus,
)
from gateway.observe.trend import PowerTrend
from gateway.observe.view import (
    BudgetStatus,
    Chart,
    EnergyStatus,
    GatewayView,
    HistoryStatus,
    MeterStatus,
    ModbusStats,
    MqttStats,
    OutputStatus,
    Series,
    SparkplugStats,
)

__all__ = [
    "BudgetStatus", "Chart", "EnergyStatus", "GatewayView", "HistoryStatus", "HttpEndpoint",
    "MeterStatus", "ModbusStats", "MqttStats", "OutputStatus", "PowerTrend", "Readiness",
    "RelayCounters", "Series", "SparkplugStats", "SupervisorEndpoint", "SupervisorView",
    "WorkerStatus", "exposition", "merged_exposition", "readiness", "registry_for", "render_status",
]
