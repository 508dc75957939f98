"""What the simulator and the gateway share: HTTP plumbing (:mod:`~gateway.support.http`),
crash-safe state files (:mod:`~gateway.support.statefile`), the logging setup
(:mod:`~gateway.support.logs`) and rate-limited log events (:mod:`~gateway.support.throttle`).
Depends on the kernel only."""

from gateway.support.http import HttpError, Request, RequestParser, Response, WebServer, render
from gateway.support.logs import FORMATS, LEVELS, configure_logging, mask_tokens
from gateway.support.statefile import read_json, write_json
from gateway.support.throttle import LogThrottle

__all__ = ["FORMATS", "LEVELS", "HttpError", "LogThrottle", "Request", "RequestParser",
           "Response", "WebServer", "configure_logging", "mask_tokens", "read_json", "render",
           "write_json"]
