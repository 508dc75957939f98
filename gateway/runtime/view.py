"""The app as the views see it: :class:`AppView` implements
:class:`~gateway.observe.GatewayView` over the app's parts, read at each request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gateway.commands import CommandTally
from gateway.config import Config
from gateway.core import Hub
from gateway.energy import Energy
from gateway.history import History
from gateway.modbus import ModbusOutput
from gateway.mqtt import MqttOutput, RegisterIdentities
from gateway.observe import (
    BudgetStatus,
    EnergyStatus,
    HistoryStatus,
    HttpEndpoint,
    MeterStatus,
    ModbusStats,
    MqttStats,
    OutputStatus,
    PowerTrend,
    SparkplugStats,
)
from gateway.runtime.charts import LastCaptures, trend_chart
from gateway.runtime.fleet import Fleet
from gateway.sparkplug import SparkplugOutput
from gateway.support import HttpStats


class Parts(Protocol):
    """What the view reads of the app (:class:`gateway.runtime.app.App` has all of it)."""

    @property
    def config(self) -> Config: ...
    @property
    def stopping(self) -> bool: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def fleet(self) -> Fleet: ...
    @property
    def mqtt(self) -> MqttOutput | None: ...
    @property
    def modbus(self) -> ModbusOutput | None: ...
    @property
    def command_tally(self) -> CommandTally | None: ...
    @property
    def history(self) -> History | None: ...
    @property
    def energy(self) -> Energy | None: ...
    @property
    def http(self) -> HttpEndpoint | None: ...
    @property
    def sparkplug(self) -> SparkplugOutput | None: ...
    @property
    def identities(self) -> RegisterIdentities | None: ...
    @property
    def trend(self) -> PowerTrend | None: ...
    @property
    def captures(self) -> LastCaptures | None: ...


class _SparkplugView:
    """The Edge Node's counters and session state as one :class:`SparkplugStats`."""

    def __init__(self, spb: SparkplugOutput) -> None:
        self._spb = spb

    @property
    def connected(self) -> bool:
        return self._spb.connected

    @property
    def births(self) -> int:
        return self._spb.stats.births

    @property
    def rebirths(self) -> int:
        return self._spb.stats.rebirths

    @property
    def sent(self) -> int:
        return self._spb.stats.sent

    @property
    def malformed(self) -> int:
        return self._spb.stats.malformed

    @property
    def commands(self) -> int:
        return self._spb.stats.commands


class AppView:
    """A :class:`~gateway.observe.GatewayView` of the parts of one running app."""

    def __init__(self, app: Parts) -> None:
        self._app = app

    @property
    def config(self) -> Config:
        return self._app.config

    @property
    def stopping(self) -> bool:
        return self._app.stopping

    def meters(self, charts: bool = False) -> Sequence[MeterStatus]:
        app = self._app
        fleet, identities = app.fleet, app.identities
        counts = identities.change_counts if identities is not None else {}
        out = []
        trend, captures = (app.trend, app.captures) if charts else (None, None)
        for m in app.config.meters:
            poller, client = fleet.pollers.get(m.id), fleet.clients.get(m.id)
            chart = None if trend is None else trend_chart(
                trend.series(m.id), trend.slots * trend.step_s, trend.step_s)
            out.append(MeterStatus(
                m, app.hub.meter(m.id), poller.stats if poller else None,
                client.logins if client else None, client.login_failures if client else None,
                counts.get(m.id, 0),
                identities.recent_changes(m.id) if identities is not None else (),
                trend=chart, capture=None if captures is None else captures.chart(m.id),
                channel_renewals=client.channel_renewals if client else None))
        return out

    def outputs(self) -> Sequence[OutputStatus]:
        app, cfg = self._app, self._app.config
        rows = []
        if app.mqtt is not None:
            up = app.mqtt.connected
            rows.append(OutputStatus("MQTT", f"{cfg.mqtt.host}:{cfg.mqtt.port} "
                                     f"({cfg.mqtt.base_topic}/...)", up,
                                     "connected" if up else "not connected"))
        if app.sparkplug is not None:
            up = app.sparkplug.connected
            rows.append(OutputStatus("Sparkplug B", f"{cfg.mqtt.host}:{cfg.mqtt.port} "
                                     f"({app.sparkplug.topics.nbirth})",
                                     up, "connected" if up else "not connected"))
        if app.modbus is not None:
            up = app.modbus.listening
            rows.append(OutputStatus("Modbus TCP", f"{cfg.modbus.host}:{app.modbus.port}", up,
                                     "listening" if up else "not listening"))
        return rows

    @property
    def mqtt(self) -> MqttStats | None:
        mqtt = self._app.mqtt
        return None if mqtt is None else mqtt.stats

    @property
    def sparkplug(self) -> SparkplugStats | None:
        spb = self._app.sparkplug
        return None if spb is None else _SparkplugView(spb)

    @property
    def modbus_listening(self) -> bool:
        modbus = self._app.modbus
        return modbus is not None and modbus.listening

    @property
    def modbus(self) -> ModbusStats | None:
        modbus = self._app.modbus
        return None if modbus is None else modbus.stats

    @property
    def command_counts(self) -> Mapping[tuple[str, str, str], int] | None:
        tally = self._app.command_tally
        return None if tally is None else tally.counts

    @property
    def http(self) -> HttpStats | None:
        http = self._app.http
        return None if http is None else http.stats

    def energy(self) -> Sequence[EnergyStatus] | None:
        energy = self._app.energy
        if energy is None:
            return None
        out = []
        for meter in sorted(self._app.fleet.pollers):
            tally = energy.tally(meter)
            if tally is None:
                continue
            st = tally.stats
            behind = tally.behind()
            lag = tally.target - min(c.through for c in behind.values()) \
                if behind and tally.target is not None else 0
            out.append(EnergyStatus(meter, st.coarse_rows, st.coarse_seconds,
                                    st.discontinuities, st.requests, st.failed_requests, lag))
        return out

    @property
    def loop_late_s(self) -> float:
        return self._app.fleet.lag.total_s

    def budgets(self) -> Sequence[BudgetStatus]:
        app = self._app
        return [BudgetStatus(name, b.limit, b.allowed, b.in_use, b.cuts)
                for name, service in (("energy", app.energy), ("history", app.history))
                if service is not None and (b := service.budget) is not None]

    def history(self) -> Sequence[HistoryStatus] | None:
        history = self._app.history
        if history is None:
            return None
        out = []
        for meter in sorted(self._app.fleet.pollers):
            backfill = history.backfill(meter)
            if backfill is None:
                continue
            gap = backfill.coverage.gap()
            out.append(HistoryStatus(meter, backfill.published_rows, backfill.given_up_s,
                                     0 if gap is None else gap[1] - gap[0]))
        return out
