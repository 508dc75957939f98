"""The project's exception tree.

Every error that crosses a module boundary is one of these; third-party errors (httpx,
paho-mqtt, pymodbus, yaml) are converted where they are caught (``raise X(...) from exc``).
No message ever contains a password, a password hash or a token.

    GatewayError
    ├── StartupFailed            something needed at start is missing (exit code 3)
    │   └── StateFileError       a file in ``gateway.state_dir`` is damaged; ``path`` names it
    ├── ConfigError              invalid configuration; ``problems`` lists every one
    │   └── MappingError         invalid Modbus mapping file; ``problems`` likewise
    ├── MeterError               anything about one meter; ``meter`` names it
    │   ├── MeterUnavailable     refused, unreachable, reset, TLS failure
    │   │   └── MeterTimeout     no answer within the timeout
    │   ├── AuthError            the meter refused the credentials
    │   ├── MeterProtocolError   the reply is not what the WebAPI promises; ``field`` names where
    │   │   ├── NotAnEgauge      the host answers, but not as an eGauge meter
    │   │   ├── MeterReplyTooLarge  the reply body is larger than the client reads
    │   │   └── MeterReportedError  HTTP 200 with an ``error`` member (or a non-auth HTTP error)
    │   │       ├── CallPending  /ctrl/call/{tid}: "EAGAIN: ..." (poll again)
    │   │       └── ConfigConflict  HTTP 412: If-Match failed, the configuration changed
    ├── CommandError             a command request refused or failed; ``code`` is machine-readable
    ├── SparkplugPayloadError    bytes that are not a Sparkplug B payload (NCMD, DCMD)
    └── UpstreamError            a worker process's loopback endpoint did not answer (or not
                                 as HTTP): it starts, restarts or hangs
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

# The process's exit codes (``egauge-gateway ...``).
EXIT_OK: Final = 0  # a clean stop
EXIT_CRASH: Final = 1  # an unexpected error, or a forced stop (a second SIGTERM / SIGINT)
EXIT_STARTUP: Final = 3  # something needed at start is missing (state directory, a port, ...)
EXIT_CONFIG: Final = 78  # invalid configuration (EX_CONFIG)


class GatewayError(Exception):
    """Base of every error raised by the gateway."""


class StartupFailed(GatewayError):
    """Something the gateway needs at start is not there: the state directory, a port,
    certificates (exit code 3)."""


class StateFileError(StartupFailed):
    """A state file (pins, ...) cannot be used as it is: serving without it could move an
    identity, so the gateway refuses to start (exit code 3). ``path`` names the file."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


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


class MeterReplyTooLarge(MeterProtocolError):
    """The reply body is larger than the client reads (it stopped reading there)."""


class MeterReportedError(MeterProtocolError):
    """The meter answered with an ``error`` member (usually with HTTP 200)."""


class CallPending(MeterReportedError):
    """A /ctrl call has not finished yet ("EAGAIN: Call is pending.")."""


class ConfigConflict(MeterReportedError):
    """A /config write was refused because its If-Match ETag is stale (HTTP 412)."""


class ErrorCode(StrEnum):
    """Every error code a command request can be answered with (docs/COMMANDS.md)."""

    INVALID = "invalid"  # the request is malformed, or names an unknown meter
    NOT_ALLOWED = "not_allowed"  # the meter's commands.allow does not grant it
    UNKNOWN_ACTION = "unknown_action"
    COOLDOWN = "cooldown"  # a reboot within reboot_cooldown_s of the last one
    OFFLINE = "offline"  # the meter is offline (nothing was sent) or became unreachable
    TIMEOUT = "timeout"  # no result within commands.timeout_s
    METER_ERROR = "meter_error"  # the meter refused or failed the call
    CONFLICT = "conflict"  # a config write lost against a concurrent change (If-Match)
    BUSY = "busy"  # a queue or rate limit is full
    INTERNAL_ERROR = "internal_error"  # a bug in the gateway; logged with its traceback


class CommandError(GatewayError):
    """A command request was refused or failed; ``code`` says how (:class:`ErrorCode`)."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        self.code = ErrorCode(code)
        self.message = message
        super().__init__(f"{self.code}: {message}")


class SparkplugPayloadError(GatewayError):
    """Received bytes are not a valid Sparkplug B payload (too large, or not protobuf)."""


class UpstreamError(GatewayError):
    """A worker process's loopback endpoint did not answer, or not as HTTP (it is starting,
    restarting or stuck); the supervisor shows that worker as unavailable."""
