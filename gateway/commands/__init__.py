"""Commands: MQTT (and Modbus, Sparkplug) requests to a meter's /cmd, /ctrl and /config,
behind each meter's ``commands.allow``.

The face: :class:`CommandRouter` (checks, runs and answers requests), the typed requests and
answers (:class:`CommandRequest`, :class:`Command`, :class:`CommandResponse`,
:class:`Outcome`), the audit sink type and :class:`CommandTally`, and what map files reuse to
check the commands they hold (:func:`parse_action`, :data:`ENVELOPE`). Modules behind it:
``envelope`` (payload decoding), ``policy`` (what a meter allows), ``redaction`` (what may be
shown), ``actions`` (each action's fields and WebAPI calls), ``audit``, ``limits``, ``router``.
shown), ``session`` (an action's access to its meter, dry runs), ``actions`` (the action
table; the /cmd, /ctrl and /config actions), ``capture``, ``ctid`` and ``diagnostics`` (logs,
alerts, Lua variables, ``api/get``), ``audit``, ``router``.
"""

from gateway.commands.actions import ACTIONS, DEFAULT_RELAY_COUNT, parse_action
from gateway.commands.audit import AuditSink, CommandTally
from gateway.commands.envelope import ENVELOPE
from gateway.commands.limits import Limits
from gateway.commands.policy import Need, Policy
from gateway.commands.request import Command, CommandRequest, CommandResponse, Outcome
from gateway.commands.router import CommandRouter, OutcomeListener

__all__ = [
    "ACTIONS", "DEFAULT_RELAY_COUNT", "ENVELOPE", "AuditSink", "Command", "CommandRequest",
    "CommandResponse", "CommandRouter", "CommandTally", "Limits", "Need", "Outcome",
    "OutcomeListener", "Policy", "parse_action",
]
