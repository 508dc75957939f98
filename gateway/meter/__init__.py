"""The southbound side: the eGauge WebAPI of each meter (the project's only httpx user).

Other packages use :class:`MeterClient` (the protocol) and build clients with
:class:`WebApiClient`; :func:`type_code` knows the eGauge type codes and their units.
"""

from gateway.meter.channel import TlsContexts
from gateway.meter.client import WebApiClient
from gateway.meter.protocol import MeterClient
from gateway.meter.units import TypeCode, type_code

__all__ = ["MeterClient", "TlsContexts", "TypeCode", "WebApiClient", "type_code"]
