"""The southbound side: the eGauge WebAPI of each meter (the project's only httpx user).

Other packages use :class:`MeterClient` (the protocol) and build clients with
:class:`WebApiClient`; :func:`type_code` knows the eGauge type codes and their units,
:func:`rounded` / :func:`decimals` how precisely a value of a type is shown. The replies of
the other services are typed by ``capture`` (waveforms) and ``logs`` (alerts, logs).
:class:`WebApiClient` (:func:`inverted` wraps one so that some registers read with the
opposite sign); :func:`type_code` knows the eGauge type codes and their units,
:func:`quantized` rounds a value to the digits its type's quantum supports.
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
from gateway.meter.invert import InvertedRegisters, inverted
from gateway.meter.logs import MeterAlert, parse_alerts, parse_entries
from gateway.meter.protocol import MeterClient
from gateway.meter.units import TypeCode, decimals, quantized, rounded, to_digits, type_code

__all__ = [
    "CaptureChannel", "CaptureProgress", "InvertedRegisters", "MeterAlert", "MeterClient",
    "TlsContexts", "Trace", "TypeCode", "Waveform", "WebApiClient", "decimals", "inverted",
    "parse_alerts", "parse_channels", "parse_cookie", "parse_entries", "parse_progress",
    "parse_waveform", "quantized", "rounded", "to_digits", "type_code",
]
