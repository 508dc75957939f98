"""The configuration's value types: small, frozen and already checked.

:mod:`gateway.config.loader` builds them from ``gateway.yaml`` (the checks of each section
live in :mod:`gateway.config.sections`); everything else only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.config.alerts import AlertsConfig
from gateway.config.sparkplug import SparkplugConfig
from gateway.secret import Secret


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """What may be written to one meter: entries such as ``reboot``, ``relay``,
    ``cmd:clear``, ``config:/net/hostname``, ``ctrl:relay.close``. Empty: nothing.
    ``ctid_cooldown_s`` spaces the CTid scans and flashes (they suspend measurement)."""

    allow: tuple[str, ...] = ()
    reboot_cooldown_s: float = 300.0
    timeout_s: float = 10.0
    ctid_cooldown_s: float = 60.0

    def cooldown_s(self, kind: str) -> float:
        """The cool-down of a disruptive action's kind (``reboot`` or ``ctid``)."""
        return self.ctid_cooldown_s if kind == "ctid" else self.reboot_cooldown_s


@dataclass(frozen=True, slots=True)
class CommandLimits:
    """The command path's limits, shared by every meter (the top-level ``commands:``
    section): commands admitted per meter and not yet finished (``busy`` beyond), commands
    per meter within a rate window, how long a transaction's answer is remembered, and how
    many MQTT requests are held at once -- received and not yet answered (``busy`` beyond)."""

    queue: int = 8
    rate: int = 30
    rate_window_s: float = 60.0
    dedup_window_s: float = 600.0
    inbox: int = 256


@dataclass(frozen=True, slots=True)
class EnergyConfig:
    """The import/export counters (docs/ENERGY.md): ``origin`` ``zero`` (count from the first
    second seen) or ``meter`` (count the whole history the meter holds, from its database
    epoch); ``registers`` None for the power registers that can run both ways (``auto``),
    else the names to count."""

    enabled: bool = True
    origin: str = "zero"  # zero | meter
    registers: tuple[str, ...] | None = None  # None: auto


@dataclass(frozen=True, slots=True)
class MeterConfig:
    id: str
    url: str  # scheme://host[:port], no /api
    username: str
    password: Secret
    verify_tls: bool | str = True  # True, False or a CA bundle path
    poll_interval_s: float = 1.0
    timeout_s: float = 0.9
    offline_after: int = 3  # failed polls before availability flips to offline
    registers: tuple[str, ...] | None = None  # None: all
    local: bool = False  # also read /local each poll
    modbus_unit_id: int = 1
    modbus_mapping: str = "default"  # default | sunspec | path to a mapping file
    commands: CommandPolicy = field(default_factory=CommandPolicy)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)  # the section, over ``energy:``
    invert: tuple[str, ...] = ()  # registers whose sign is reversed (a CT mounted backwards)

    @property
    def api_url(self) -> str:
        return self.url.rstrip("/") + "/api"


@dataclass(frozen=True, slots=True)
class GatewaySection:
    id: str = "egauge-gateway"
    log_level: str = "info"  # debug | info | warning | error
    log_format: str = "auto"  # auto | console | json
    state_dir: str = "/var/lib/egauge-gateway"
    shutdown_timeout_s: float = 10.0
    loop_stall_s: float = 30.0  # the event loop blocked this long ends the process; 0: never
    # worker processes (gateway.runtime.supervisor); "auto": one per CPU this process may use
    workers: int | Literal["auto"] = 1


@dataclass(frozen=True, slots=True)
class MqttTls:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # skip hostname/certificate verification


@dataclass(frozen=True, slots=True)
class HomeAssistant:
    enabled: bool = True
    prefix: str = "homeassistant"
    expire_after_s: int | None = None  # None: derived from poll interval and offline_after


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = 1883
    base_topic: str = "egauge"
    client_id: str | None = None  # None: "egauge-gateway-<gateway.id>"
    protocol: str = "auto"  # auto (5, or 3.1.1 when the broker refuses 5) | 3.1.1 | 5
    qos: int = 1  # state topics (and so the acknowledgements the history tracks)
    # per-register topics: QoS 0 costs the gateway and the broker a third of a QoS 1 message
    # (no PUBACK); their values are retained and sent again on every reconnect
    register_qos: int = 0
    retain: bool = True  # for state and register topics
    per_register_topics: bool = True
    max_silence_s: float = 60.0  # heartbeat: republish unchanged values at least this often
    min_interval_s: float = 10.0  # per-register topics: at most one message per this interval
    deadband: tuple[tuple[str, float], ...] = ()  # (type code, change in the rate's unit)
    keepalive_s: int = 30
    username: str | None = None
    password: Secret | None = None
    tls: MqttTls | None = None
    queue_limit: int = 10_000  # messages held while the broker is unreachable
    homeassistant: HomeAssistant = field(default_factory=HomeAssistant)
    # MQTT 5 response topics a request may name (topic filters); None: <base_topic>/clients/#
    response_topics: tuple[str, ...] | None = None

    @property
    def response_filters(self) -> tuple[str, ...]:
        """The topic filters an MQTT 5 response topic must match to be answered on."""
        if self.response_topics is None:
            return (f"{self.base_topic}/clients/#",)
        return self.response_topics

    def deadband_for(self, code: str) -> float:
        """The least change of a rate of type ``code`` that its topic reports (0: any)."""
        for key, value in self.deadband:
            if key == code:
                return value
        return 0.0


@dataclass(frozen=True, slots=True)
class ModbusConfig:
    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104  (a Modbus server is meant to be reachable)
    port: int = 5020
    mapping: str = "default"  # default for meters that name none
    unknown_unit: str = "ignore"  # ignore (no reply) | exception (0x0B)
    writes: bool = False  # Modbus writes (coils / command register) through the router
    allow_from: tuple[str, ...] | None = None  # client networks (CIDR); None: everyone
    max_connections_per_address: int = 100  # open connections of one client address
    frame_timeout_s: float = 5.0  # a started request frame must be complete within this


@dataclass(frozen=True, slots=True)
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9120
    url: str | None = None  # how the status page is reached (None: from host and port)

    @property
    def status_url(self) -> str | None:
        """The status page's address for links (Home Assistant's ``configuration_url``):
        ``url`` when given, else ``http://host:port/`` -- none for a wildcard host, whose
        address the gateway cannot know."""
        if self.url is not None:
            return self.url
        if self.host in ("0.0.0.0", "::", ""):  # noqa: S104
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """This instance's share of the meters (see :mod:`gateway.config.shard`): 0 <= index < count."""

    index: int = 0
    count: int = 1
    # instance i listens on the Modbus and HTTP ports + i (several instances on one host);
    # false: on the configured ports (each instance on a host or pod of its own)
    port_offset: bool = True


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """Gap-free history (see :mod:`gateway.history.service`): after a gap, the missing rows are read
    from the meter's own database and published on ``<base>/<meter>/history``."""

    enabled: bool = True
    max_lookback_s: int = 86_400  # older parts of a gap are given up
    step_s: int = 1  # row spacing asked for; the meter answers coarser rows beyond its fine level
    max_rows: int = 600  # rows per /register request (max-rows)
    # after a lost broker connection, the seconds the broker acknowledged this long before it
    # are sent again (a broker that dies loses what it took since its last save); 0: off
    replay_s: int = 5


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection
    meters: tuple[MeterConfig, ...]
    mqtt: MqttConfig
    modbus: ModbusConfig
    http: HttpConfig
    source: str = ""  # the file it came from
    shard: ShardConfig = field(default_factory=ShardConfig)
    # None: the meters as configured; a tuple: one shard instance's view (shard.instance),
    # holding the ids of the meters that the other instances poll
    foreign_meters: tuple[str, ...] | None = None
    history: HistoryConfig = field(default_factory=HistoryConfig)
    sparkplug: SparkplugConfig = field(default_factory=SparkplugConfig)
    commands: CommandLimits = field(default_factory=CommandLimits)
    energy: EnergyConfig = field(default_factory=EnergyConfig)  # the meters' defaults
    # None: the whole instance; set only in a worker process (by its supervisor, never by the
    # file): this process's share of the instance's meters, index of count workers
    worker: ShardConfig | None = None

    def meter(self, meter_id: str) -> MeterConfig:
        for m in self.meters:
            if m.id == meter_id:
                return m
        raise KeyError(meter_id)
