"""SimMeter: one simulated eGauge meter, its state and the Python API tests use.

Values are deterministic functions of the meter's clock (``clock() + set-time offset``):
:meth:`SimMeter.rate`, :meth:`SimMeter.raw` and :meth:`SimMeter.cumulative` predict what
``/register`` reports, :meth:`SimMeter.raw_changes` the exact per-second changes. The
newest row is the whole second ``T = floor(now)``; the top-level ``ts`` is ``T`` plus a
fixed fraction (:data:`TS_FRACTION`) and rates are those of the second ``T`` (the change of
its raw value, see :mod:`gateway.simulator.ledger`). The default registers and ``/local``
sensors come from one physically consistent site (:mod:`gateway.simulator.site`).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import structlog

from gateway.secret import Secret
from gateway.simulator import registers as regs
from gateway.simulator.authority import Authority, ha1
from gateway.simulator.capture import Capturer, Sine
from gateway.simulator.configuration import ConfigStore, default_tree
from gateway.simulator.ctid import CtidService
from gateway.simulator.ctrl import Controller
from gateway.simulator.database import Database, default_levels
from gateway.simulator.faults import Faults
from gateway.simulator.journal import Alert, Journal
from gateway.simulator.ledger import Ledger
from gateway.simulator.lua import LuaVars
from gateway.simulator.recorder import CallRecord, CallRecorder
from gateway.simulator.registers import SimRegister
from gateway.simulator.reply import ReplyCache
from gateway.simulator.sensors import LocalSensors
from gateway.simulator.signals import Signal
from gateway.simulator.site import Site
from gateway.simulator.system import FIRMWARE, KERNEL
from gateway.simulator.timespec import TimeContext
from gateway.simulator.timezone import PosixTz
from gateway.simulator.tree import Json

log = structlog.get_logger(__name__)

REALM = "eGauge Administration"
TS_FRACTION = ".000420096"
DownListener = Callable[["SimMeter", float], None]


class SimMeter:
    """A WebAPI-faithful eGauge meter (serve it with :class:`SimServer`).

    ``reactive_code`` types the default ``Reactive`` register (``PQ``, as egauge-python's
    table reads it, or the spec's ``var``); ``day_s`` is the default site's day length
    (a short day makes ``Grid`` cross zero twice every ``day_s`` seconds); ``phase``
    shifts the site's appliance cycles; ``alert_period_s`` spaces the clock-driven alert
    of ``/log/alert`` (0: none). ``reboot_resets_cumulative`` / ``reboot_rewind_s`` say
    what ``POST /cmd/reboot`` does to the counters (see :meth:`reboot_state`).
    """

    def __init__(self, serial: str = "SIM0001", username: str = "owner",
                 password: str | Secret = "default",  # noqa: S107 -- the demo password
                 *, token_lifetime_s: float = 600.0,
                 nonce_lifetime_s: float = 60.0, clock: Callable[[], float] = time.time,
                 registers: Sequence[SimRegister] | None = None, model: str = "EG4115",
                 hostname: str | None = None, rights: Iterable[str] = ("save", "ctrl"),
                 fine_history_s: int = 7200, created: int | None = None,
                 epoch: int | None = None, reboot_downtime_s: float = 20.0,
                 seed: int | None = None, max_calls: int = 10_000,
                 reactive_code: str = "PQ", day_s: int = 86400, phase: float = 0.0,
                 alert_period_s: float = 3600.0) -> None:
        self.serial = serial
        self.model = model
        self.username = username
        self.password = password if isinstance(password, Secret) else Secret(password)
        self.realm = REALM
        self.clock = clock
        self._time_offset = 0.0
        self.reboot_downtime_s = reboot_downtime_s
        self.reboot_resets_cumulative = False
        self.reboot_rewind_s: int | None = None
        self.internet_access = True
        self.fine_history_s = fine_history_s
        self.faults = Faults()
        self.rng = random.Random(seed)  # noqa: S311 -- fault dice, not secrets
        self.recorder = CallRecorder(max_calls)
        self.reply_cache = ReplyCache()
        self.authority = Authority(REALM, self.now, nonce_lifetime_s, token_lifetime_s)
        self.controller = Controller()
        now = int(self.now())
        self.created = (now // 86400 - 30) * 86400 if created is None else created
        self.site = Site(day_s=day_s, phase=phase, reactive_code=reactive_code)
        self.sensors = LocalSensors(self.created, *self.site.sensors())
        self.ledger = Ledger(self.created, self.register)
        self.boot_time = float(max(self.created, now - 3 * 86400))
        self.boot_reason = "general reset"
        self.user_boot: float | None = None
        self._volatile_since = int(self.boot_time)
        self._state_version = 0
        self._registers: list[SimRegister] = []
        self._by_name: dict[str, SimRegister] = {}
        self.set_registers(self.site.registers() if registers is None else registers)
        privs = ["view_settings"] + [{"save": "unlimited_save"}.get(r, r) for r in rights]
        self.config = ConfigStore(
            default_tree(
                hostname or f"eGauge-{serial}", self.created + 86400 if epoch is None else epoch,
                username, privs, ha1(username, REALM, self.password.reveal())),
            self._register_config)
        self.capturer = Capturer(self._capture_sine)
        self.ctid = CtidService()
        self.journal = Journal(self.now, serial, FIRMWARE, KERNEL, alert_period_s,
                               booted_at=self.boot_time)
        self.lua = LuaVars(lambda: self.now() - self.boot_time)
        self._down_until = 0.0
        self._listeners: list[DownListener] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimMeter(serial={self.serial!r}, username={self.username!r})"

    # -- time and values ---------------------------------------------------------------
    def now(self) -> float:
        """The meter's clock (the injected clock plus any ``/cmd/set-time`` offset)."""
        return self.clock() + self._time_offset

    def latest(self) -> int:
        """The newest stored second ``T``."""
        return int(self.now() // 1)

    def ts_text(self, t: int) -> str:
        return f"{t}{TS_FRACTION}"

    @property
    def epoch(self) -> int:
        return int(self.config.value("db", "epoch"))

    @property
    def hostname(self) -> str:
        return str(self.config.value("net", "hostname"))

    def register(self, name: str) -> SimRegister:
        return self._by_name[name]

    def rate(self, name: str, t: float) -> float:
        """The rate ``/register`` reports for the second ``floor(t)``: that second's raw
        change times the quantum (virtual: the formula over rates)."""
        return self.ledger.rate(name, t)

    def raw(self, name: str, t: float) -> int:
        """The stored accumulator of ``name`` at the second ``floor(t)``, counted from
        database creation (after a cumulative reset: the reset counter)."""
        return self.ledger.raw(name, t)

    def raw_changes(self, name: str, start: int, end: int) -> list[int]:
        """The exact per-second changes ``raw(t) - raw(t-1)`` for ``t`` in
        ``start+1 .. end``; each equals ``round(rate(t) / quantum)`` except across a
        cumulative reset."""
        return self.ledger.raw_changes(name, start, end)

    def cumulative(self, name: str, t: float) -> float:
        """The physical cumulative value (``raw * quantum``, e.g. W·s for power)."""
        return self.raw(name, t) * self._by_name[name].quantum

    def local_rate(self, sensor: str, t: float, measurement: str = "n",
                   section: str = "values") -> float:
        return self.sensors.rate(sensor, t, measurement, section)

    def local_cumul(self, sensor: str, t: float, measurement: str = "n",
                    section: str = "values") -> int:
        return self.sensors.cumul(sensor, t, measurement, section)

    def database(self) -> Database:
        return Database(default_levels(self.fine_history_s), self.created,
                        self._volatile_since, self.latest())

    def time_context(self, now: int | None = None) -> TimeContext:
        """How time expressions read at the newest stored second (``now``: at that second,
        the one a reply was started for, though the clock moved on meanwhile)."""
        tz: dt.tzinfo
        try:
            tz = PosixTz(str(self.config.value("time", "zone")))
        except ValueError:
            tz = dt.UTC
        start_day = str(self.config.value("var", "global", "billing.start_day"))
        return TimeContext(self.latest() if now is None else now, self.epoch, tz,
                           int(start_day) if start_day.isdigit() else 1)

    @property
    def state_version(self) -> tuple[int, int]:
        """Changes whenever anything that shapes a data reply changes."""
        return (self._state_version, self.config.version)

    # -- registers ---------------------------------------------------------------------
    @property
    def registers(self) -> list[SimRegister]:
        return list(self._registers)

    def set_registers(self, registers: Sequence[SimRegister]) -> None:
        """Replace the register set (idx values as given; values follow the names)."""
        regs.check_register_set(registers)
        self._registers = sorted(registers, key=lambda r: r.idx)
        self._by_name = {r.name: r for r in self._registers}
        self.ledger.forget()
        self._state_version += 1

    def reorder_registers(self, names: Iterable[str]) -> None:
        self.set_registers(regs.reordered(self._registers, names))

    def remove_registers(self, names: Iterable[str]) -> None:
        self.set_registers(regs.without(self._registers, names))

    def add_register(self, name: str, type_code: str, wave: Signal) -> None:
        """Add a physical register; e.g. ``Wave(0.0, 1000.0, 2 * n)`` is one whose rate
        crosses zero every ``n`` seconds (at multiples of ``n``)."""
        self.set_registers(regs.with_added(self._registers, name, type_code, wave))

    def rename_registers(self, names: dict[str, str]) -> None:
        """Rename registers in place (same idx, did and values)."""
        self.set_registers(regs.renamed(self._registers, names))

    def retype_registers(self, codes: dict[str, str]) -> None:
        self.set_registers(regs.retyped(self._registers, codes))

    def _register_config(self) -> Json:
        return {
            "physical": {r.name: {"dev": "local", "did": r.did, "type": r.type_code,
                                  "value": r.source or f"S{(r.did or 0) + 1}*L1"}
                         for r in self._registers if not r.virtual},
            "virtual": {r.name: {"value": [{"op": s, "register": n} for s, n in r.formula]}
                        for r in self._registers if r.virtual},
        }

    # -- auth --------------------------------------------------------------------------
    @property
    def logins(self) -> int:
        """Successful logins so far."""
        return self.authority.logins

    @property
    def token_lifetime_s(self) -> float:
        return self.authority.token_lifetime_s

    @token_lifetime_s.setter
    def token_lifetime_s(self, value: float) -> None:
        self.authority.token_lifetime_s = value

    @property
    def nonce_lifetime_s(self) -> float:
        return self.authority.nonce_lifetime_s

    @nonce_lifetime_s.setter
    def nonce_lifetime_s(self, value: float) -> None:
        self.authority.nonce_lifetime_s = value

    def revoke_tokens(self) -> None:
        self.authority.revoke_all()

    def expire_nonces(self) -> None:
        self.authority.expire_nonces()

    def ha1_for(self, usr: str) -> str | None:
        users = self.config.value("user")
        entry = users.get(usr) if isinstance(users, dict) else None
        stored = entry.get("hash") if isinstance(entry, dict) else None
        return stored if isinstance(stored, str) and stored else None

    def rights_of(self, usr: str) -> list[str]:
        users = self.config.value("user")
        entry = users.get(usr) if isinstance(users, dict) else None
        privs = entry.get("priv", []) if isinstance(entry, dict) else []
        rights = []
        if "unlimited_save" in privs or "local_save" in privs:
            rights.append("save")
        if "ctrl" in privs:
            rights.append("ctrl")
        return rights

    # -- calls -------------------------------------------------------------------------
    @property
    def calls(self) -> list[CallRecord]:
        """The recorded WebAPI requests, oldest first."""
        return self.recorder.records()

    def calls_to(self, path: str, method: str | None = None) -> list[CallRecord]:
        """Recorded requests to ``path`` (``/api/...`` or the short ``/register``)."""
        full = path if path.startswith("/api/") else "/api" + path
        return self.recorder.records(method, full)

    def clear_calls(self) -> None:
        self.recorder.clear()

    # -- relays, time, reboot and downtime ---------------------------------------------
    @property
    def relay_mask(self) -> int:
        return self.controller.relay_mask

    @property
    def relays(self) -> tuple[bool, ...]:
        """Relay states by 0-based index (True: closed)."""
        return tuple(bool(self.controller.relay_mask >> i & 1)
                     for i in range(self.controller.relay_count))

    def set_time(self, t: float) -> None:
        self._time_offset = t - self.clock()
        self._state_version += 1

    def reboot_state(self, *, reset_cumulative: bool = False,
                     rewind_s: int | None = None) -> int:
        """What a reboot does to the meter's state: tokens revoked, the volatile 1-second
        rows lost (older times fall back to minute rows), a capture or CTid operation
        cancelled, boot lines logged. With ``reset_cumulative`` every physical counter
        restarts from 0, with ``rewind_s`` it goes back to its value ``rewind_s`` seconds
        earlier (a cumulative reset; rates are not affected). Answers the first second
        after the reboot: 1-second rows and reset counters start there."""
        if reset_cumulative and rewind_s is not None:
            raise ValueError("give reset_cumulative or rewind_s, not both")
        now = self.now()
        first = int(now // 1) + 1
        if reset_cumulative or rewind_s is not None:
            self.ledger.reset(first, [r.name for r in self._registers if not r.virtual],
                              rewind_s)
        self.authority.revoke_all()
        self.boot_time = self.user_boot = now
        self.boot_reason = "software reset"
        self._volatile_since = first
        self._state_version += 1
        self.capturer.reset()
        self.ctid.stop()
        self.journal.booted(now, self.boot_reason)
        log.info("sim_meter_rebooted", meter=self.serial, first_second=first,
                 reset_cumulative=reset_cumulative, rewind_s=rewind_s)
        return first

    def reboot(self, downtime_s: float | None = None, *, reset_cumulative: bool = False,
               rewind_s: int | None = None) -> int:
        """Reboot now (see :meth:`reboot_state`); the meter is then off the network for
        ``downtime_s`` (default ``reboot_downtime_s``). Answers the first second after."""
        first = self.reboot_state(reset_cumulative=reset_cumulative, rewind_s=rewind_s)
        self.go_down(self.reboot_downtime_s if downtime_s is None else downtime_s)
        return first

    # -- alerts and capture ------------------------------------------------------------
    def raise_alert(self, name: str, detail: str = "", prio: int = 3) -> Alert:
        """Record an alert now (``/log/alert``); the same name, detail and priority again
        bumps its entry's count."""
        return self.journal.raise_alert(name, detail, prio)

    @property
    def alerts(self) -> list[Alert]:
        """The alert log as ``/log/alert`` would list it now."""
        return self.journal.current()

    def _capture_sine(self, channel: str, t: float) -> Sine:
        second = int(t // 1)
        peak = self.sensors.rate(channel, second) * 2**0.5
        return (peak, self.sensors.rate(channel, second, "f"), self.site.capture_phase(channel))

    @property
    def is_down(self) -> bool:
        return time.monotonic() < self._down_until

    def go_down(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` (the server closes this meter's socket)."""
        self._down_until = time.monotonic() + seconds
        log.info("sim_meter_down", meter=self.serial, seconds=seconds)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(self, seconds)

    def add_listener(self, listener: DownListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: DownListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

