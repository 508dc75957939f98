"""The southbound side: the eGauge WebAPI of each meter (the project's only httpx user).

Other packages use :class:`MeterClient` (the protocol) and build clients with
:class:`WebApiClient` (:func:`inverted` wraps one so that some registers read with the
opposite sign); :func:`type_code` knows the eGauge type codes and their units,
:func:`quantized` rounds a value to the digits its type's quantum supports.
"""

from gateway.meter.channel import TlsContexts
from gateway.meter.client import WebApiClient
from gateway.meter.invert import InvertedRegisters, inverted
from gateway.meter.protocol import MeterClient
from gateway.meter.units import TypeCode, quantized, type_code

__all__ = ["InvertedRegisters", "MeterClient", "TlsContexts", "TypeCode", "WebApiClient",
           "inverted", "quantized", "type_code"]
