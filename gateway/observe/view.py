"""What the views (readiness, the status page, ``/metrics``) are shown: narrow protocols and
plain data, never the app itself. The runtime implements :class:`GatewayView` over its parts
(:mod:`gateway.runtime.view`); tests may hand in anything of this shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.config import Config, MeterConfig
from gateway.core import MeterState, PollStats
from gateway.model import RegisterChange
from gateway.support import HttpStats


@dataclass(frozen=True, slots=True)
class Series:
    """One trace of a chart: ``points`` are (x, y) with y in ``unit``."""

    name: str
    unit: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Chart:
    """A small plot for the status page: traces over a common x axis (``x_label`` names it
    with its unit, ``x_range`` fixes its span; None: the data's); ``marker`` draws a
    vertical line at that x (a capture's trigger)."""

    title: str
    x_label: str
    series: tuple[Series, ...]
    marker: float | None = None
    x_range: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class MeterStatus:
    """One meter as the views show it: its settings, the hub's latest state, the poller's
    counters, the client's login counters (``None`` where unknown), the registers seen
    renamed or retyped on the meter since the start (their count, and the latest ones), and
    the charts the status page draws: the main power registers over the last minutes and the
    last waveform capture."""

    config: MeterConfig
    state: MeterState
    stats: PollStats | None = None
    logins: int | None = None
    login_failures: int | None = None
    register_changes: int = 0
    recent_changes: tuple[RegisterChange, ...] = ()
    trend: Chart | None = None
    capture: Chart | None = None
    channel_renewals: int | None = None  # connection pools replaced after a cancelled request


@dataclass(frozen=True, slots=True)
class OutputStatus:
    """One output on the status page: ``up`` is connected or listening."""

    name: str
    address: str
    up: bool
    state: str


@dataclass(frozen=True, slots=True)
class HistoryStatus:
    """One meter's backfill for ``/metrics``."""

    meter: str
    published_rows: int
    given_up_s: int
    gap_s: int  # span of the oldest gap still to fill (0: none)


@dataclass(frozen=True, slots=True)
class EnergyStatus:
    """One meter's energy counters for ``/metrics``: what their gap filling went through."""

    meter: str
    coarse_rows: int  # rows beyond the meter's 1-second level, counted by their sign
    coarse_seconds: int  # the seconds those rows span (their resolution is lost)
    discontinuities: int  # steps not counted (resets, a moved epoch)
    requests: int
    failed_requests: int
    lag_s: int  # how far the counters stand behind the newest reading (0: up to date)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One service's catch-up budget for ``/metrics`` (:mod:`gateway.core.budget`)."""

    service: str  # "history" or "energy"
    limit: int
    allowed: int  # reads allowed at once now (halved in each second live polling lapsed)
    in_use: int
    cuts: int  # seconds that halved it


class MqttStats(Protocol):
    """The broker connection's counters."""

    @property
    def connected(self) -> bool: ...
    @property
    def connects(self) -> int: ...
    @property
    def connect_failures(self) -> int: ...
    @property
    def published(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def queued(self) -> int: ...


class ModbusStats(Protocol):
    """The Modbus server's counters."""

    @property
    def functions(self) -> Mapping[int, int]: ...
    @property
    def function_exceptions(self) -> Mapping[tuple[int, int], int]: ...
    @property
    def unanswered(self) -> int: ...
    @property
    def connections(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def evicted(self) -> int: ...
    @property
    def refused_per_address(self) -> int: ...
    @property
    def denied(self) -> int: ...
    @property
    def frame_timeouts(self) -> int: ...
    @property
    def frames_invalid(self) -> int: ...


class SparkplugStats(Protocol):
    """The Sparkplug Edge Node's counters."""

    @property
    def connected(self) -> bool: ...
    @property
    def births(self) -> int: ...
    @property
    def rebirths(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def malformed(self) -> int: ...
    @property
    def commands(self) -> int: ...


class GatewayView(Protocol):
    """Everything the views read, at the moment they read it."""

    @property
    def config(self) -> Config: ...

    @property
    def stopping(self) -> bool: ...

    def meters(self, charts: bool = False) -> Sequence[MeterStatus]:
        """Every meter of this instance, in configuration order; with ``charts`` their power
        trend and last capture as charts too (the status page: building them for every meter
        is most of what a scrape of ``/metrics`` or ``/readyz`` would otherwise cost)."""
        ...

    def outputs(self) -> Sequence[OutputStatus]:
        """The enabled network outputs (MQTT, Modbus TCP, ...)."""
        ...

    @property
    def mqtt(self) -> MqttStats | None:
        """The broker connection's counters (None: MQTT is off)."""
        ...

    @property
    def sparkplug(self) -> SparkplugStats | None:
        """The Sparkplug Edge Node (None: Sparkplug is off)."""
        ...

    @property
    def modbus_listening(self) -> bool: ...

    @property
    def modbus(self) -> ModbusStats | None:
        """The Modbus server's counters (None: Modbus is off)."""
        ...

    @property
    def command_counts(self) -> Mapping[tuple[str, str, str], int] | None:
        """Command outcomes by (meter, action, outcome)."""
        ...

    @property
    def http(self) -> HttpStats | None:
        """The HTTP endpoint's counters (None: it is off)."""
        ...

    def history(self) -> Sequence[HistoryStatus] | None:
        """Per meter backfill counters (None: history is off)."""
        ...

    def energy(self) -> Sequence[EnergyStatus] | None:
        """Per meter energy counter statistics (None: no energy service)."""
        ...

    def budgets(self) -> Sequence[BudgetStatus]:
        """The catch-up budgets of the services reading the meters' databases."""
        ...

    @property
    def loop_late_s(self) -> float:
        """How late the event loop ran so far, added up (:class:`gateway.core.LoopLag`)."""
        ...
