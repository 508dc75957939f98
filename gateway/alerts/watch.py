"""AlertWatch: each meter's alert log, published entry by entry.

For every meter with ``alerts.enabled`` one task reads ``GET /log/alert`` through the
meter's lane (shared with the poller and the commands) right after the meter's first good
poll and then every ``alerts.interval_s``, while the meter is online and the broker
connected. Each entry with an id above the last one published is published once, oldest
first, on ``<base>/<meter>/alert`` (JSON with ``event_type: "alert"``, QoS 1, not
retained); the last id is kept in ``state_dir/alerts.json`` (written atomically) only after
the broker acknowledged the message, so a restart neither repeats nor skips an entry (a
crash between the acknowledgement and the write can repeat that one entry). A message not
acknowledged within :data:`ACK_TIMEOUT_S` stops the round and stays pending: later rounds
wait for its acknowledgement (the connection sends it again after a reconnect) before
anything newer is published, and publish it once more only after :data:`RESEND_AFTER_S`.

The meter folds a repeat of an alert into its entry (``count``, ``last``): an entry is
published when it first appears, with the count it has then. Entry ids only grow; a meter
whose log starts over at lower ids (none known to) would have them skipped until they pass
the last id seen. Without a state file (the first run) every entry in the log is new.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from gateway.config import AlertsConfig, MeterConfig
from gateway.errors import MeterError
from gateway.meter import MeterAlert, parse_alerts
from gateway.model import Availability, Identity, Reading, RegisterInfo
from gateway.support import Wake, read_json, write_json

log = structlog.get_logger(__name__)

STATE_FILE: Final = "alerts.json"
ACK_TIMEOUT_S: Final = 30.0
RESEND_AFTER_S: Final = 300.0
EVENT_TYPE: Final = "alert"


class AlertOutput(Protocol):
    """What the watch needs of the MQTT output."""

    @property
    def connected(self) -> bool: ...

    def publish_alert(self, meter: str, event: Mapping[str, Any]) -> asyncio.Future[None]:
        """Publish one event; the future resolves once the broker acknowledged it."""
        ...


class AlertSource(Protocol):
    """What the watch needs of a meter client."""

    async def fetch(self, method: str, path: str, query: str = "", body: Any = None
                    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class AlertLane:
    """Where one meter's reads go: its client and the lane it shares with the poller."""

    source: AlertSource
    lock: asyncio.Lock


def alert_event(meter: str, alert: MeterAlert) -> dict[str, Any]:
    """The payload of one alert (Home Assistant's event entity reads ``event_type``)."""
    return {"event_type": EVENT_TYPE, "meter": meter, **alert.as_json()}


@dataclass(slots=True)
class _Watched:
    cfg: AlertsConfig
    last_id: int  # the newest entry published (0: none)
    online: bool = False
    polled: Wake = field(default_factory=Wake)  # a good poll happened
    published: int = 0
    pending: tuple[int, asyncio.Future[None], float] | None = None  # id, ack, sent at


class AlertWatch:
    """The alert logs of the meters that have ``alerts.enabled`` (a hub sink with ``start``,
    ``serve``, ``stop`` and ``set_meters``)."""

    def __init__(self, meters: Iterable[MeterConfig], output: AlertOutput,
                 lanes: Callable[[str], AlertLane | None], state_dir: str | Path, *,
                 ack_timeout_s: float = ACK_TIMEOUT_S, resend_after_s: float = RESEND_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._output = output
        self._lanes = lanes
        self._ack_timeout_s = ack_timeout_s
        self._resend_after_s = resend_after_s
        self._clock = clock
        self._configs = {m.id: m.alerts for m in meters if m.alerts.enabled}
        self._meters: dict[str, _Watched] = {}
        self._kept: dict[str, int] = {}  # last ids of meters not watched now
        self._saved: dict[str, int] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None

    def last_id(self, meter: str) -> int | None:
        """The newest entry of ``meter`` published so far (None: not watched)."""
        state = self._meters.get(meter)
        return None if state is None else state.last_id

    def pending_ack(self, meter: str) -> asyncio.Future[None] | None:
        """The acknowledgement still awaited for an alert published earlier, if any."""
        state = self._meters.get(meter)
        return None if state is None or state.pending is None else state.pending[1]

    def published(self, meter: str) -> int:
        state = self._meters.get(meter)
        return 0 if state is None else state.published

    # -- service ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the last ids of the previous run."""
        try:
            data = read_json(self.path)
            saved = {str(m): int(v["last_id"]) for m, v in data["meters"].items()} \
                if data is not None else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("alerts_state_unreadable", path=str(self.path), error=repr(exc))
            saved = {}
        self._saved = dict(saved)
        self._kept = saved
        for meter, cfg in self._configs.items():
            self._meters[meter] = _Watched(cfg, self._kept.pop(meter, 0))

    async def serve(self) -> None:
        """One watch task per meter, until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for meter in self._meters:
                self._spawn(meter)
            await asyncio.Event().wait()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self.save()

    def set_meters(self, meters: Sequence[MeterConfig]) -> None:
        """Watch these meters' logs from now on (a configuration reload)."""
        wanted = {m.id: m.alerts for m in meters if m.alerts.enabled}
        for meter in [m for m in self._meters if m not in wanted]:
            self._kept[meter] = self._meters.pop(meter).last_id
            task = self._tasks.pop(meter, None)
            if task is not None:
                task.cancel()
        for meter, cfg in wanted.items():
            state = self._meters.get(meter)
            if state is not None:
                state.cfg = cfg  # the next wait uses the new interval
                continue
            self._meters[meter] = _Watched(cfg, self._kept.pop(meter, 0))
            if self._group is not None:
                self._spawn(meter)
        self._configs = wanted

    def save(self) -> None:
        """Write the last ids when they moved; a failure is logged (and retried at the
        next acknowledged alert)."""
        ids = {**self._kept, **{m: s.last_id for m, s in self._meters.items()}}
        if ids == self._saved:
            return
        data = {"version": 1, "meters": {m: {"last_id": i} for m, i in sorted(ids.items())}}
        try:
            write_json(self.path, data)
        except OSError as exc:
            log.warning("alerts_state_write_failed", path=str(self.path), error=repr(exc))
            return
        self._saved = ids

    def _spawn(self, meter: str) -> None:
        assert self._group is not None
        self._tasks[meter] = self._group.create_task(self._watch(meter), name=f"alerts:{meter}")

    async def _watch(self, meter: str) -> None:
        state = self._meters[meter]
        await state.polled.wait()
        while True:
            await self.check(meter)
            await asyncio.sleep(state.cfg.interval_s)

    async def check(self, meter: str) -> int:
        """One round: read the log, publish the new entries; how many were acknowledged."""
        state = self._meters.get(meter)
        lane = self._lanes(meter)
        if state is None or lane is None or not state.online or not self._output.connected:
            return 0
        done = 0
        if state.pending is not None:
            alert_id, ack, sent = state.pending
            if ack.done():
                state.pending = None
                if not ack.cancelled():
                    self._acknowledged(meter, state, alert_id)
                    done += 1
            elif self._clock() - sent < self._resend_after_s:
                return 0  # still waiting for the broker to take it
            else:
                state.pending = None
                log.warning("meter_alert_resent", meter=meter, id=alert_id)
        try:
            async with lane.lock:
                reply = await lane.source.fetch("GET", "/log/alert")
            alerts, _ = parse_alerts(meter, reply)
        except MeterError as exc:
            log.warning("meter_alerts_unreadable", meter=meter, error=exc.message)
            return done
        for alert in [a for a in alerts if a.id > state.last_id]:
            ack = self._output.publish_alert(meter, alert_event(meter, alert))
            try:
                async with asyncio.timeout(self._ack_timeout_s):
                    await asyncio.shield(ack)
            except TimeoutError:
                log.warning("meter_alert_unconfirmed", meter=meter, id=alert.id,
                            timeout_s=self._ack_timeout_s)
                state.pending = (alert.id, ack, self._clock())
                break
            self._acknowledged(meter, state, alert.id)
            done += 1
        return done

    def _acknowledged(self, meter: str, state: _Watched, alert_id: int) -> None:
        state.last_id = max(state.last_id, alert_id)
        state.published += 1
        self.save()
        log.info("meter_alert_published", meter=meter, id=alert_id)

    # -- sink -------------------------------------------------------------------------------

    def on_identity(self, meter: str, identity: Identity) -> None:
        pass

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        pass

    def on_reading(self, reading: Reading) -> None:
        state = self._meters.get(reading.meter)
        if state is not None:
            state.polled.set()

    def on_availability(self, availability: Availability) -> None:
        state = self._meters.get(availability.meter)
        if state is not None:
            state.online = availability.online
