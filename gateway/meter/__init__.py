"""The southbound side: the eGauge WebAPI of each meter (the project's only httpx user).

Other packages use :class:`MeterClient` (the protocol) and build clients with
:class:`WebApiClient`; :func:`type_code` knows the eGauge type codes and their units,
:func:`rounded` / :func:`decimals` how precisely a value of a type is shown. The replies of
the other services are typed by ``capture`` (waveforms) and ``logs`` (alerts, logs).
"""

from gateway.meter.capture import (
    CaptureChannel,
    CaptureProgress,
    Trace,
    Waveform,
    parse_channels,
    parse_cookie,
    parse_progress,
    parse_waveform,
)
from gateway.meter.channel import TlsContexts
from gateway.meter.client import WebApiClient
from gateway.meter.logs import MeterAlert, parse_alerts, parse_entries
from gateway.meter.protocol import MeterClient
from gateway.meter.units import TypeCode, decimals, rounded, type_code

__all__ = ["CaptureChannel", "CaptureProgress", "MeterAlert", "MeterClient", "TlsContexts",
           "Trace", "TypeCode", "Waveform", "WebApiClient", "decimals", "parse_alerts",
           "parse_channels", "parse_cookie", "parse_entries", "parse_progress",
           "parse_waveform", "rounded", "type_code"]
