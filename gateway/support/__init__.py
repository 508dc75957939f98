"""What the simulator and the gateway share: HTTP on h11 (:mod:`~gateway.support.http`; a
client for loopback peers, :mod:`~gateway.support.http_client`),
crash-safe state files (:mod:`~gateway.support.statefile`), the pin file format and its
locks (:mod:`~gateway.support.pins`), the logging setup (:mod:`~gateway.support.logs`),
rate-limited log events (:mod:`~gateway.support.throttle`) and a light one-task event
(:mod:`~gateway.support.wake`).
Depends on the kernel only."""

from gateway.support.http import WebServer
from gateway.support.http_client import Fetched, fetch
from gateway.support.http_limits import HttpLimits, HttpStats
from gateway.support.http_message import Answer, Request, Response
from gateway.support.http_protocol import HttpProtocol
from gateway.support.http_site import HttpSite
from gateway.support.logs import FORMATS, LEVELS, configure_logging, mask_tokens
from gateway.support.pins import Entry, PinFile, PinLock, PinStore, integer
from gateway.support.statefile import dumps, read_json, write_json, write_text
from gateway.support.throttle import LogThrottle
from gateway.support.wake import Wake

__all__ = [
    "FORMATS", "LEVELS", "Answer", "Entry", "Fetched", "HttpLimits", "HttpProtocol", "HttpSite",
    "HttpStats", "LogThrottle", "PinFile", "PinLock", "PinStore", "Request", "Response",
    "Wake", "WebServer", "configure_logging", "dumps", "fetch", "integer", "mask_tokens",
    "read_json", "write_json", "write_text",
]
