"""The running gateway: the composition root (:class:`App`), the fleet of polled meters,
configuration reloads, systemd notifications, the loop watchdog, the supervisor of worker processes
(:class:`Supervisor`, ``gateway.workers``) and the demo. Nothing imports this package but
the command line."""

from gateway.runtime.app import App, main
from gateway.runtime.component import Component
from gateway.runtime.fleet import Fleet
from gateway.runtime.supervisor import Supervisor

__all__ = ["App", "Component", "Fleet", "Supervisor", "main"]
