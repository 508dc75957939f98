"""A WebAPI-faithful eGauge meter (and fleet) for demos, tests and benchmarks.

Standard library only. ``SimMeter`` holds one meter's state and predicts its values;
``SimServer`` serves meters over HTTP/1.1 (optionally TLS) on asyncio;
``ThreadedSimServer`` runs a SimServer on its own loop in a background thread.
``Site`` is the physically consistent default site; ``Wave``, ``DayCurve`` and ``Mix`` are
the value functions registers are made of.
"""

from gateway.simulator.background import ThreadedSimServer
from gateway.simulator.faults import Faults
from gateway.simulator.fleet import fleet
from gateway.simulator.meter import REALM, SimMeter
from gateway.simulator.recorder import CallRecord
from gateway.simulator.registers import SimRegister, physical, virtual
from gateway.simulator.server import SimServer
from gateway.simulator.signals import DayCurve, Mix, Signal
from gateway.simulator.site import Site, default_registers
from gateway.simulator.wave import Wave

__all__ = [
    "REALM",
    "CallRecord",
    "DayCurve",
    "Faults",
    "Mix",
    "Signal",
    "SimMeter",
    "SimRegister",
    "SimServer",
    "Site",
    "ThreadedSimServer",
    "Wave",
    "default_registers",
    "fleet",
    "physical",
    "virtual",
]
