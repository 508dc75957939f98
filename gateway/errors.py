"""The project's exception tree.

Every error that crosses a module boundary is one of these; third-party errors (httpx,
paho-mqtt, pymodbus, yaml) are converted where they are caught (``raise X(...) from exc``).
No message ever contains a password, a password hash or a token.

    GatewayError
    ├── ConfigError              invalid configuration; ``problems`` lists every one
    ├── MappingError             invalid Modbus mapping file; ``problems`` likewise
    ├── MeterError               anything about one meter; ``meter`` names it
    │   ├── MeterUnavailable     refused, unreachable, reset, TLS failure
    │   │   └── MeterTimeout     no answer within the timeout
    │   ├── AuthError            the meter refused the credentials
    │   ├── MeterProtocolError   the reply is not what the WebAPI promises; ``field`` names where
    │   │   ├── NotAnEgauge      the host answers, but not as an eGauge meter
    │   │   └── MeterReportedError  HTTP 200 with an ``error`` member (or a non-auth HTTP error)
    │   │       ├── CallPending  /ctrl/call/{tid}: "EAGAIN: ..." (poll again)
    │   │       └── ConfigConflict  HTTP 412: If-Match failed, the configuration changed
    ├── CommandError             a command request refused or failed; ``code`` is machine-readable
    └── SparkplugPayloadError    bytes that are not a Sparkplug B payload (NCMD, DCMD)
"""

from __future__ import annotations

from collections.abc import Sequence


class GatewayError(Exception):
    """Base of every error raised by the gateway."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` holds every problem, one line each."""

    def __init__(self, problems: Sequence[str], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(self.problems))


class MappingError(ConfigError):
    """A Modbus mapping file is invalid; ``problems`` holds every problem."""


class MeterError(GatewayError):
    """Something went wrong talking to one meter."""

    def __init__(self, meter: str, message: str) -> None:
        self.meter = meter
        self.message = message
        super().__init__(f"meter {meter}: {message}")


class MeterUnavailable(MeterError):
    """The meter cannot be reached (refused, DNS, reset, TLS)."""


class MeterTimeout(MeterUnavailable):
    """The meter did not answer within the timeout."""


class AuthError(MeterError):
    """The meter refused the configured credentials."""


class MeterProtocolError(MeterError):
    """The meter's reply does not have the shape the WebAPI promises."""

    def __init__(self, meter: str, message: str, field: str = "") -> None:
        self.field = field
        super().__init__(meter, f"{field}: {message}" if field else message)


class NotAnEgauge(MeterProtocolError):
    """The host answers HTTP, but not as an eGauge meter."""


class MeterReportedError(MeterProtocolError):
    """The meter answered with an ``error`` member (usually with HTTP 200)."""


class CallPending(MeterReportedError):
    """A /ctrl call has not finished yet ("EAGAIN: Call is pending.")."""


class ConfigConflict(MeterReportedError):
    """A /config write was refused because its If-Match ETag is stale (HTTP 412)."""


class CommandError(GatewayError):
    """A command request was refused or failed.

    ``code`` is one of: ``invalid``, ``not_allowed``, ``unknown_action``, ``cooldown``,
    ``offline``, ``timeout``, ``meter_error``, ``conflict``, ``busy``.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class SparkplugPayloadError(GatewayError):
    """Received bytes are not a valid Sparkplug B payload (too large, or not protobuf)."""
