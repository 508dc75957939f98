"""gateway.yaml -> a frozen, typed Config; every problem reported at once.

The value types come first; :func:`load_config` / :func:`parse_config` build them (the checks
of each section live in :mod:`gateway.config_sections`). This is the project's only YAML user:
mapping files are read with :func:`load_yaml`.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.config_sparkplug import SparkplugConfig
from gateway.errors import ConfigError
from gateway.secret import Secret


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    """What may be written to one meter: entries such as ``reboot``, ``relay``,
    ``cmd:clear``, ``config:/net/hostname``, ``ctrl:relay.close``. Empty: nothing."""

    allow: tuple[str, ...] = ()
    reboot_cooldown_s: float = 300.0
    timeout_s: float = 10.0


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
    protocol: str = "3.1.1"  # 3.1.1 | 5
    qos: int = 1
    retain: bool = True  # for state and register topics
    per_register_topics: bool = True
    max_silence_s: float = 60.0  # heartbeat: republish unchanged values at least this often
    keepalive_s: int = 30
    username: str | None = None
    password: Secret | None = None
    tls: MqttTls | None = None
    queue_limit: int = 10_000  # messages held while the broker is unreachable
    homeassistant: HomeAssistant = field(default_factory=HomeAssistant)


@dataclass(frozen=True, slots=True)
class ModbusConfig:
    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104  (a Modbus server is meant to be reachable)
    port: int = 5020
    mapping: str = "default"  # default for meters that name none
    unknown_unit: str = "ignore"  # ignore (no reply) | exception (0x0B)
    writes: bool = False  # Modbus writes (coils / command register) through the router


@dataclass(frozen=True, slots=True)
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9120


@dataclass(frozen=True, slots=True)
class ShardConfig:
    """This instance's share of the meters (see :mod:`gateway.shard`): 0 <= index < count."""

    index: int = 0
    count: int = 1


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """Gap-free history (see :mod:`gateway.history`): after a gap, the missing rows are read
    from the meter's own database and published on ``<base>/<meter>/history``."""

    enabled: bool = True
    max_lookback_s: int = 86_400  # older parts of a gap are given up
    step_s: int = 1  # row spacing asked for; the meter answers coarser rows beyond its fine level
    max_rows: int = 600  # rows per /register request (max-rows)


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySection
    meters: tuple[MeterConfig, ...]
    mqtt: MqttConfig
    modbus: ModbusConfig
    http: HttpConfig
    source: str = ""  # the file it came from
    shard: ShardConfig = field(default_factory=ShardConfig)
    # None: the meters as configured; a tuple: one shard instance's view (gateway.shard.instance),
    # holding the ids of the meters that the other instances poll
    foreign_meters: tuple[str, ...] | None = None
    history: HistoryConfig = field(default_factory=HistoryConfig)
    sparkplug: SparkplugConfig = field(default_factory=SparkplugConfig)

    def meter(self, meter_id: str) -> MeterConfig:
        for m in self.meters:
            if m.id == meter_id:
                return m
        raise KeyError(meter_id)



class _Loader(yaml.SafeLoader):
    """``safe_load`` that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, error: type[ConfigError] = ConfigError) -> object:
    """A YAML file's content (safe types only). A missing file, a syntax error or a duplicate
    key raises ``error`` with one problem line naming the file (and line:column)."""
    name = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)
    except OSError as exc:
        raise error([f"{name}: cannot read: {exc.strerror or exc}"], name) from exc
    except UnicodeDecodeError as exc:
        raise error([f"{name}: not UTF-8 text ({exc.reason})"], name) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        what = exc.problem or exc.context or "syntax error"
        raise error([f"{where}: invalid YAML: {what}"], name) from exc
    except yaml.YAMLError as exc:
        raise error([f"{name}: invalid YAML: {exc}"], name) from exc


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and check a configuration file; raise :class:`ConfigError` listing every problem.

    ``env`` (default: ``os.environ``) serves ``${NAME}`` expansion and ``CREDENTIALS_DIRECTORY``.
    """
    data = load_yaml(path)
    return parse_config(data, str(path), env, Path(path).resolve().parent)


def parse_config(data: object, source: str = "<config>", env: Mapping[str, str] | None = None,
                 base_dir: str | Path | None = None) -> Config:
    """Check a parsed YAML tree. Relative file names resolve against ``base_dir`` (default: the
    working directory). Literal passwords are refused when ``source`` is a world-readable file."""
    from gateway.config_sections import build
    from gateway.schema import Context

    ctx = Context(os.environ if env is None else env, Path(base_dir or Path.cwd()))
    config = build(ctx, data, source)
    if ctx.plain_secrets:
        _refuse_world_readable(ctx.problems, ctx.plain_secrets, source)
    if ctx.problems or config is None:
        raise ConfigError(ctx.problems or ["(top level): no configuration"], source)
    return config


def _refuse_world_readable(problems: list[str], paths: list[str], source: str) -> None:
    try:
        st = os.stat(source)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o004:
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        problems.extend(
            f"{path}: plain-text password in a world-readable file (mode {mode}); use ${{ENV}}, "
            "password_file or password_credential, or chmod o-r the file"
            for path in paths)


def load_or_report(path: str | Path) -> Config | None:
    """The config at ``path``, or ``None`` after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None


def main(args: argparse.Namespace) -> int:
    """``egauge-gateway check-config -c FILE``: ``ok: ...`` and 0, or every problem and 78."""
    from gateway.cli import EXIT_CONFIG, EXIT_OK

    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    ids = ", ".join(m.id for m in config.meters)
    print(f"ok: {len(config.meters)} meter{'s' if len(config.meters) != 1 else ''} ({ids})")
    return EXIT_OK
