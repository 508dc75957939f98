"""The checks of each gateway.yaml section, turning the YAML tree into :mod:`gateway.config.types`
values. Every problem is recorded in the :class:`~gateway.config.schema.Context`; nothing raises."""

from __future__ import annotations

import math
import re
import socket
from dataclasses import replace
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from gateway.config.addresses import host_name_ok
from gateway.config.addresses import networks as read_networks
from gateway.config.alerts import KEYS as ALERTS_KEYS
from gateway.config.alerts import parse_alerts
from gateway.config.allowlist import parse as parse_allow_entry
from gateway.config.credentials import KEYS as PASSWORD_KEYS
from gateway.config.credentials import password as read_password
from gateway.config.schema import MISSING, Context, Expanded, Section, join
from gateway.config.sparkplug import KEYS as SPARKPLUG_KEYS
from gateway.config.sparkplug import parse_sparkplug
from gateway.config.topics import topic, topic_filters
from gateway.config.types import (
    CommandLimits,
    CommandPolicy,
    Config,
    EnergyConfig,
    GatewaySection,
    HistoryConfig,
    HomeAssistant,
    HttpConfig,
    MeterConfig,
    ModbusConfig,
    MqttConfig,
    MqttTls,
    ShardConfig,
)
from gateway.secret import Secret
from gateway.support import FORMATS, LEVELS

ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]*")
BUILTIN_MAPPINGS: Final = ("default", "sunspec")
_ANY_HOST: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104
_MAPPING_PENDING: Final = ""  # a meter that names no mapping takes modbus.mapping
_TOP_KEYS: Final = ("gateway", "meters", "mqtt", "modbus", "http", "shard", "history",
                     "sparkplug", "commands", "energy")
_GATEWAY_KEYS: Final = ("id", "log_level", "log_format", "state_dir", "shutdown_timeout_s",
                        "loop_stall_s", "workers")
MAX_WORKERS: Final = 256
_ORDINAL: Final = re.compile(r".*-([0-9]+)")
_METER_KEYS: Final = (
    "id", "url", "username", *PASSWORD_KEYS, "verify_tls", "poll_interval_s", "timeout_s",
    "offline_after", "registers", "local", "modbus_unit_id", "modbus_mapping", "commands",
    "alerts", "energy", "invert",
)
_ENERGY_KEYS: Final = ("enabled", "origin", "registers")
_ORIGINS: Final = ("zero", "meter")
_COMMAND_KEYS: Final = ("allow", "reboot_cooldown_s", "timeout_s", "ctid_cooldown_s")
_MQTT_KEYS: Final = (
    "enabled", "host", "port", "base_topic", "client_id", "protocol", "qos", "register_qos",
    "retain", "per_register_topics", "max_silence_s", "min_interval_s", "deadband",
    "keepalive_s", "username", *PASSWORD_KEYS, "tls", "queue_limit", "homeassistant",
    "response_topics",
)
PROTOCOLS: Final = ("auto", "3.1.1", "5")
_TLS_KEYS: Final = ("ca_file", "cert_file", "key_file", "insecure")
_HA_KEYS: Final = ("enabled", "prefix", "expire_after_s")
_MODBUS_KEYS: Final = ("enabled", "host", "port", "mapping", "unknown_unit", "writes",
                       "allow_from", "max_connections_per_address", "frame_timeout_s")
MAX_MODBUS_CONNECTIONS: Final = 1000  # the server's limit (gateway.modbus.server)
_HTTP_KEYS: Final = ("enabled", "host", "port", "url")
_SHARD_KEYS: Final = ("index", "count", "port_offset")
_HISTORY_KEYS: Final = ("enabled", "max_lookback_s", "step_s", "max_rows", "replay_s")
_LIMIT_KEYS: Final = ("queue", "rate", "rate_window_s", "dedup_window_s", "inbox")
_PORT: Final = "must be a port 1-65535"
_POLL_S: Final = 1.0
_TIMEOUT_S: Final = 3.0  # when not given: the smaller of this and 0.9 x poll_interval_s
_OFFLINE_AFTER: Final = 3


def build(ctx: Context, data: object, source: str) -> Config | None:
    """The whole configuration, or ``None`` when the top level is not even a mapping."""
    top = "a mapping with gateway, meters, mqtt, modbus and http sections"
    root = Section.of(ctx, "", data, _TOP_KEYS, what=top)
    if root is None:
        return None
    gateway = _gateway(root.section("gateway", _GATEWAY_KEYS))
    energy = _energy(root.section("energy", _ENERGY_KEYS), EnergyConfig())
    meters = _meters(root, energy)
    mqtt = _mqtt(root.section("mqtt", _MQTT_KEYS))
    modbus = _modbus(root.section("modbus", _MODBUS_KEYS))
    http = _http(root.section("http", _HTTP_KEYS))
    shard = _shard(root.section("shard", _SHARD_KEYS), modbus, http)
    history = _history(root.section("history", _HISTORY_KEYS))
    sparkplug = parse_sparkplug(root.section("sparkplug", SPARKPLUG_KEYS))
    commands = _limits(root.section("commands", _LIMIT_KEYS))
    if modbus.enabled:
        _unique(ctx, meters, "modbus_unit_id", "duplicate unit id")
    if modbus.enabled and http.enabled and modbus.port == http.port and (
            modbus.host == http.host or {modbus.host, http.host} & _ANY_HOST):
        ctx.problem("http.port", f"same port as modbus.port ({modbus.port})", http.port)
    built = tuple(m if m.modbus_mapping != _MAPPING_PENDING
                  else replace(m, modbus_mapping=modbus.mapping) for _, m in meters)
    return Config(gateway=gateway, meters=built, mqtt=mqtt, modbus=modbus, http=http,
                  source=source, shard=shard, history=history, sparkplug=sparkplug,
                  commands=commands, energy=energy)


def _gateway(s: Section | None) -> GatewaySection:
    d = GatewaySection()
    if s is None:
        return d
    return GatewaySection(
        id=s.string("id", d.id, ID),
        log_level=s.choice("log_level", d.log_level, LEVELS),
        log_format=s.choice("log_format", d.log_format, FORMATS),
        state_dir=s.string("state_dir", d.state_dir),
        shutdown_timeout_s=s.number("shutdown_timeout_s", d.shutdown_timeout_s),
        loop_stall_s=_loop_stall(s, d.loop_stall_s),
        workers=_workers(s),
    )


def _loop_stall(s: Section, default: float) -> float:
    """Seconds the event loop may stand still before the process ends: 0 (never) or >= 1."""
    value = s.number("loop_stall_s", default, inclusive=True)
    if 0 < value < 1:
        message = "must be 0 (no loop watchdog) or a number >= 1"
        return s.fail("loop_stall_s", message, s.raw("loop_stall_s"), default)
    return value


def _workers(s: Section) -> int | Literal["auto"]:
    """``workers``: a number of worker processes 1-256, or ``auto`` (one per CPU the process
    may run on, counted when the gateway starts)."""
    value = s.raw("workers")
    if value == "auto":
        return "auto"
    message = f"must be an integer 1-{MAX_WORKERS} or auto"
    return s.integer("workers", 1, 1, MAX_WORKERS, message) if value is not MISSING else 1


def _meters(root: Section, energy: EnergyConfig) -> list[tuple[int, MeterConfig]]:
    """The meters (those that are at least mappings) with their positions in the file;
    ``energy`` is the default of their ``energy`` sections."""
    items = root.raw("meters", required=True)
    if items is MISSING:
        return []
    if not isinstance(items, list) or not items:
        return root.fail("meters", "must be a non-empty list of meters", items, [])
    meters: list[tuple[int, MeterConfig]] = []
    for index, item in enumerate(items):
        s = Section.of(root.ctx, join("meters", index), item, _METER_KEYS)
        if s is not None:
            meters.append((index, _meter(s, energy)))
    _unique(root.ctx, meters, "id", "duplicate meter id")
    return meters


def _unique(ctx: Context, meters: list[tuple[int, MeterConfig]], key: str, message: str) -> None:
    first: dict[object, int] = {}
    for index, meter in meters:
        value = getattr(meter, key)
        if not value:
            continue
        if value in first:
            also = f"(also meters[{first[value]}])"
            ctx.problem(f"meters[{index}].{key}", f"{message} {value!r} {also}")
        else:
            first[value] = index


def _meter(s: Section, energy: EnergyConfig) -> MeterConfig:
    """One meter; a key that is missing or invalid leaves a placeholder (and a problem)."""
    meter_id = s.string("id", "", ID, required=True)
    url = _url(s)
    username = s.string("username", "", required=True)
    password = read_password(s, required=True)
    verify_tls = _verify_tls(s)
    poll = s.number("poll_interval_s", math.nan) if s.has("poll_interval_s") else _POLL_S
    if s.has("timeout_s"):
        timeout = s.number("timeout_s", math.nan)
        if timeout >= poll:
            message = f"must be below poll_interval_s ({poll:g})"
            s.ctx.problem(s.at("timeout_s"), message, s.raw("timeout_s"))
    else:
        timeout = min(_TIMEOUT_S, round(0.9 * poll, 3))
    return MeterConfig(
        id=meter_id, url=url, username=username, password=password or Secret(""),
        verify_tls=verify_tls, poll_interval_s=poll, timeout_s=timeout,
        offline_after=s.integer("offline_after", _OFFLINE_AFTER, 1),
        registers=_registers(s),
        local=s.boolean("local", False),
        # 0 (never valid) marks an invalid unit id so that it is not also called a duplicate
        modbus_unit_id=s.integer("modbus_unit_id", 0, 1, 247) if s.has("modbus_unit_id") else 1,
        modbus_mapping=_mapping(s, "modbus_mapping", _MAPPING_PENDING),
        commands=_commands(s.section("commands", _COMMAND_KEYS)),
        alerts=parse_alerts(s.section("alerts", ALERTS_KEYS)),
        energy=_energy(s.section("energy", _ENERGY_KEYS), energy),
        invert=_names(s, "invert") or (),
    )


def _url(s: Section) -> str:
    """``http(s)://host[:port]`` with no path (``/api`` is appended); a trailing / is dropped."""
    value = s.string("url", "", required=True)
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is not None and (parts.username is not None or parts.password is not None):
        return s.fail("url", "must not contain credentials (use username and password)",
                      value, "", secret=True)
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.netloc.endswith(":") or port == 0 or not host_name_ok(parts.hostname)):
        message = "must be http://HOST[:PORT] or https://HOST[:PORT] without a path"
        return s.fail("url", message, value, "")
    return f"{parts.scheme}://{parts.netloc}"


def _verify_tls(s: Section) -> bool | str:
    value = s.raw("verify_tls")
    if isinstance(value, Expanded) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value is MISSING or isinstance(value, bool):
        return value if isinstance(value, bool) else True
    if isinstance(value, str) and value:
        path = s.ctx.resolve(value)
        if path.is_file():
            return str(path)
    message = "must be true, false or the path of an existing CA bundle file"
    return s.fail("verify_tls", message, value, True)


def _registers(s: Section) -> tuple[str, ...] | None:
    value = s.raw("registers")
    if value is MISSING or value == "all":
        return None
    if not isinstance(value, list) or not value:
        message = "must be 'all' or a non-empty list of register names"
        return s.fail("registers", message, value, None)
    return _distinct(s, "registers", value)


def _names(s: Section, key: str, word: str | None = None) -> tuple[str, ...] | None:
    """A list of distinct register names (``None`` when absent or ``word``, e.g. ``auto``)."""
    value = s.raw(key)
    if value is MISSING or value is None or (word is not None and value == word):
        return None
    if not isinstance(value, list):
        alternative = f"{word!r} or " if word is not None else ""
        return s.fail(key, f"must be {alternative}a list of register names", value, None)
    return _distinct(s, key, value)


def _distinct(s: Section, key: str, value: list[Any]) -> tuple[str, ...]:
    """The register names of the list ``key`` (each a non-empty string, none twice)."""
    names: dict[str, int] = {}
    for index, item in enumerate(value):
        path = join(s.at(key), index)
        name = s.ctx.expand(path, item) if isinstance(item, str) else item
        if name is MISSING:
            continue
        if not isinstance(name, str) or not name:
            s.ctx.problem(path, "must be a non-empty string (quote names that look like numbers)",
                          name)
        elif name in names:
            s.ctx.problem(path, f"duplicate register {name!r} (also {key}[{names[name]}])")
        else:
            names[str(name)] = index
    return tuple(names)


def _energy(s: Section | None, base: EnergyConfig) -> EnergyConfig:
    """``energy: {enabled, origin, registers}`` (top level, or a meter's own, whose missing
    keys are those of ``base``)."""
    if s is None:
        return base
    registers = _names(s, "registers", "auto") if s.has("registers") else base.registers
    return EnergyConfig(
        enabled=s.boolean("enabled", base.enabled),
        origin=s.choice("origin", base.origin, _ORIGINS),
        registers=registers,
    )


def _mapping(s: Section, key: str, default: str) -> str:
    """A built-in mapping name or the absolute path of an existing mapping file."""
    value = s.raw(key)
    if value is MISSING:
        return default
    if value in BUILTIN_MAPPINGS:
        return str(value)
    if isinstance(value, str) and value and s.ctx.resolve(value).is_file():
        return str(s.ctx.resolve(value))
    message = "must be default, sunspec or the path of an existing mapping file"
    return s.fail(key, message, value, default)


def _commands(s: Section | None) -> CommandPolicy:
    d = CommandPolicy()
    if s is None:
        return d
    allow: list[str] = []
    value = s.raw("allow")
    if isinstance(value, list):
        for index, item in enumerate(value):
            path = join(s.at("allow"), index)
            entry = s.ctx.expand(path, item) if isinstance(item, str) else item
            if entry is MISSING:
                continue
            parsed = parse_allow_entry(entry) if isinstance(entry, str) else "must be a string"
            if isinstance(parsed, str):
                s.ctx.problem(path, parsed, entry)
            else:
                allow.append(str(entry))
    elif value is not MISSING and value is not None:
        s.fail("allow", "must be a list of command entries", value, None)
    return CommandPolicy(
        allow=tuple(allow),
        reboot_cooldown_s=s.number("reboot_cooldown_s", d.reboot_cooldown_s, inclusive=True),
        timeout_s=s.number("timeout_s", d.timeout_s),
        ctid_cooldown_s=s.number("ctid_cooldown_s", d.ctid_cooldown_s, inclusive=True),
    )


def _mqtt(s: Section | None) -> MqttConfig:
    d = MqttConfig()
    if s is None:
        return d
    tls = _tls(s)
    username = s.optional_string("username")
    password = read_password(s, required=False)
    if password is not None and username is None:
        s.ctx.problem(s.at("username"), "required key missing when a password is given")
    ha = s.section("homeassistant", _HA_KEYS)
    silence = s.number("max_silence_s", d.max_silence_s)
    return MqttConfig(
        enabled=s.boolean("enabled", d.enabled),
        host=s.string("host", d.host),
        port=s.integer("port", 8883 if tls is not None else d.port, 1, 65535, _PORT),
        base_topic=topic(s, "base_topic", d.base_topic),
        client_id=s.optional_string("client_id"),
        protocol=s.choice("protocol", d.protocol, PROTOCOLS),
        qos=s.integer("qos", d.qos, 0, 2, "must be 0, 1 or 2"),
        register_qos=s.integer("register_qos", d.register_qos, 0, 2, "must be 0, 1 or 2"),
        retain=s.boolean("retain", d.retain),
        per_register_topics=s.boolean("per_register_topics", d.per_register_topics),
        max_silence_s=silence,
        min_interval_s=_min_interval(s, silence),
        deadband=_deadband(s),
        keepalive_s=s.integer("keepalive_s", d.keepalive_s, 1, 65535),
        username=username,
        password=password,
        tls=tls,
        queue_limit=s.integer("queue_limit", d.queue_limit, 0),
        homeassistant=_homeassistant(ha),
        response_topics=topic_filters(s, "response_topics"),
    )


def _min_interval(s: Section, silence: float) -> float:
    """``min_interval_s``: >= 0 and not above the heartbeat ``max_silence_s``."""
    value = s.number("min_interval_s", MqttConfig().min_interval_s, inclusive=True)
    if value > silence:
        return s.fail("min_interval_s", f"must not exceed max_silence_s ({silence:g})",
                      s.raw("min_interval_s"), min(MqttConfig().min_interval_s, silence))
    return value


def _deadband(s: Section) -> tuple[tuple[str, float], ...]:
    """``deadband: {TYPE_CODE: change, ...}``: the least change of a rate, in its unit, that
    its per-register topic reports."""
    value = s.raw("deadband")
    if value is MISSING or value is None:
        return ()
    if not isinstance(value, dict):
        return s.fail("deadband", "must be a mapping of type code to a change (e.g. {P: 10})",
                      value, ())
    out: list[tuple[str, float]] = []
    for key, item in value.items():
        path = join(s.at("deadband"), str(key))
        number = item if isinstance(item, int | float) and not isinstance(item, bool) else None
        if not isinstance(key, str) or not key:
            s.ctx.problem(path, "must be a type code such as P, V or I", key)
        elif number is None or not math.isfinite(number) or number < 0:
            s.ctx.problem(path, "must be a number >= 0", item)
        else:
            out.append((key, float(number)))
    return tuple(out)


def _tls(s: Section) -> MqttTls | None:
    value = s.raw("tls")
    if value is MISSING or value is None or value is False:
        return None
    if value is True:
        return MqttTls()
    t = s.section("tls", _TLS_KEYS, "null, true or a mapping (ca_file, cert_file, key_file, "
                  "insecure)")
    if t is None:
        return None
    files = {key: t.optional_string(key) for key in ("ca_file", "cert_file", "key_file")}
    found = {key: t.existing_file(key, name) if name else None for key, name in files.items()}
    if files["key_file"] and not files["cert_file"]:
        t.ctx.problem(t.at("cert_file"), "required key missing when key_file is given")
    return MqttTls(ca_file=found["ca_file"], cert_file=found["cert_file"],
                   key_file=found["key_file"], insecure=t.boolean("insecure", False))


def _homeassistant(s: Section | None) -> HomeAssistant:
    d = HomeAssistant()
    if s is None:
        return d
    return HomeAssistant(
        enabled=s.boolean("enabled", d.enabled),
        prefix=topic(s, "prefix", d.prefix),
        expire_after_s=s.optional_integer("expire_after_s", 1),
    )


def _modbus(s: Section | None) -> ModbusConfig:
    d = ModbusConfig()
    if s is None:
        return d
    return ModbusConfig(
        enabled=s.boolean("enabled", d.enabled),
        host=s.string("host", d.host),
        port=s.integer("port", d.port, 1, 65535, _PORT),
        mapping=_mapping(s, "mapping", d.mapping),
        unknown_unit=s.choice("unknown_unit", d.unknown_unit, ("ignore", "exception")),
        writes=s.boolean("writes", d.writes),
        allow_from=read_networks(s, "allow_from"),
        max_connections_per_address=s.integer(
            "max_connections_per_address", d.max_connections_per_address, 1,
            MAX_MODBUS_CONNECTIONS),
        frame_timeout_s=s.number("frame_timeout_s", d.frame_timeout_s),
    )


def _http(s: Section | None) -> HttpConfig:
    d = HttpConfig()
    if s is None:
        return d
    url = s.optional_string("url")
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        url = s.fail("url", "must be an http:// or https:// address", url, None)
    return HttpConfig(
        enabled=s.boolean("enabled", d.enabled),
        host=s.string("host", d.host),
        port=s.integer("port", d.port, 1, 65535, _PORT),
        url=url,
    )


def _shard(s: Section | None, modbus: ModbusConfig, http: HttpConfig) -> ShardConfig:
    """``shard: {index, count, port_offset}``: 0 <= index < count; instance ``index`` listens on
    the Modbus and HTTP ports plus ``index`` (see :mod:`gateway.config.shard`), which must stay
    ports, unless ``port_offset: false`` (every instance on a host or pod of its own).
    ``index: auto`` takes the ordinal at the end of the host name (``<name>-<ordinal>``, as a
    Kubernetes StatefulSet names its pods): ``$HOSTNAME``, else the system's host name."""
    d = ShardConfig()
    if s is None:
        return d
    count = s.integer("count", d.count, 1)
    if count > 1 and not s.has("index"):
        s.ctx.problem(s.at("index"), f"required key missing when count is above 1 ({count})")
        return d
    raw = s.raw("index")
    if raw == "auto":
        host = s.ctx.env.get("HOSTNAME") or socket.gethostname()
        found = _ORDINAL.fullmatch(host)
        if found is None:
            message = "auto needs a host name that ends in -<ordinal> (a StatefulSet's pod)"
            return s.fail("index", message, host, d)
        index = int(found.group(1))
        if index >= count:
            message = f"the host name's ordinal ({index}) must be below shard.count ({count})"
            return s.fail("index", message, host, d)
    elif raw is MISSING:  # absent, or a ${...} that is already reported
        return d
    else:
        index = s.integer("index", d.index, 0, message="must be an integer >= 0 or auto")
    if index >= count:
        return s.fail("index", f"must be below shard.count ({count})", s.raw("index"), d)
    offset = s.boolean("port_offset", d.port_offset)
    for name, section in (("modbus", modbus), ("http", http)):
        if offset and section.enabled and section.port and section.port + index > 65535:
            message = f"{name}.port + index ({section.port + index}) is not a port 1-65535"
            return s.fail("index", message, s.raw("index"), d)
    return ShardConfig(index=index, count=count, port_offset=offset)


def _limits(s: Section | None) -> CommandLimits:
    """``commands: {queue, rate, rate_window_s, dedup_window_s, inbox}``: the command path's
    limits for every meter (each meter's own ``commands:`` holds its allow list)."""
    d = CommandLimits()
    if s is None:
        return d
    return CommandLimits(
        queue=s.integer("queue", d.queue, 1, 10_000),
        rate=s.integer("rate", d.rate, 1, 1_000_000),
        rate_window_s=s.number("rate_window_s", d.rate_window_s),
        dedup_window_s=s.number("dedup_window_s", d.dedup_window_s, inclusive=True),
        inbox=s.integer("inbox", d.inbox, 1, 100_000),
    )


def _history(s: Section | None) -> HistoryConfig:
    """``history: {enabled, max_lookback_s, step_s, max_rows, replay_s}``; the step fits the
    look-back."""
    d = HistoryConfig()
    if s is None:
        return d
    lookback = s.integer("max_lookback_s", d.max_lookback_s, 60, 366 * 86_400)
    step = s.integer("step_s", d.step_s, 1, 3600)
    if step > lookback:
        step = s.fail("step_s", f"must not exceed max_lookback_s ({lookback})", step, d.step_s)
    return HistoryConfig(
        enabled=s.boolean("enabled", d.enabled),
        max_lookback_s=lookback,
        step_s=step,
        max_rows=s.integer("max_rows", d.max_rows, 2, 100_000),
        replay_s=s.integer("replay_s", d.replay_s, 0, 3600),
    )
