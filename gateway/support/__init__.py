"""What the simulator and the gateway share: HTTP on h11 (:mod:`~gateway.support.http`, the
only h11 user), crash-safe state files (:mod:`~gateway.support.statefile`) and the logging
setup (:mod:`~gateway.support.logs`). Depends on the kernel only."""

from gateway.support.http import WebServer
from gateway.support.http_limits import HttpLimits, HttpStats, LogThrottle
from gateway.support.http_message import Answer, Request, Response
from gateway.support.http_protocol import HttpProtocol
from gateway.support.http_site import HttpSite
from gateway.support.logs import FORMATS, LEVELS, configure_logging, mask_tokens
from gateway.support.statefile import read_json, write_json

__all__ = ["FORMATS", "LEVELS", "Answer", "HttpLimits", "HttpProtocol", "HttpSite",
           "HttpStats", "LogThrottle", "Request", "Response", "WebServer",
           "configure_logging", "mask_tokens", "read_json", "write_json"]
