"""Configuration: ``gateway.yaml`` -> a frozen, typed :class:`Config`, every problem at once.

The face of the package: the value types, the loaders, the grammar of ``commands.allow``
(:mod:`~gateway.config.allowlist`), the typed-read helpers that other file formats reuse
(:class:`Context`, :class:`Section`) and what a shard instance runs
(:mod:`~gateway.config.shard`). Modules behind it: ``types`` (values), ``schema`` (typed
reads), ``credentials`` (where passwords come from), ``sections`` (the checks of each
section), ``addresses`` (client networks, host names), ``bounds`` (the limits of a file:
size, nesting, values, valid text), ``topics`` (MQTT topics and filters), ``loader`` (YAML).
The ``check-config`` command is :mod:`gateway.runtime.check` (it also loads the Modbus mapping
files, which this package cannot).
"""

from gateway.config import allowlist, shard
from gateway.config.alerts import AlertsConfig
from gateway.config.loader import load_config, load_or_report, load_yaml, parse_config
from gateway.config.schema import MISSING, Context, Section, join, show
from gateway.config.sparkplug import SparkplugConfig
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

__all__ = [
    "MISSING", "AlertsConfig", "CommandLimits", "CommandPolicy", "Config", "Context",
    "EnergyConfig", "GatewaySection", "HistoryConfig", "HomeAssistant", "HttpConfig",
    "MeterConfig", "ModbusConfig", "MqttConfig", "MqttTls", "Section", "ShardConfig",
    "SparkplugConfig", "allowlist", "join", "load_config", "load_or_report", "load_yaml",
    "parse_config", "shard", "show",
]
