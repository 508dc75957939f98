"""The typed seams of the command path: what a transport hands the router, what the router
executes, and what it answers.

- :class:`CommandRequest`: the raw bytes of one request as a transport received them (an MQTT
  message); the router decodes them into a :class:`Command`.
- :class:`Command`: a decoded request; code that makes requests itself (Modbus writes,
  Sparkplug DCMD) builds one with :meth:`Command.of`, with no JSON in between.
- :class:`CommandResponse`: the one answer, with an :class:`~gateway.errors.ErrorCode`.
- :class:`Outcome`: a finished request and its answer, handed to the router's listeners
  (e.g. the Modbus output follows the relays it sees switched).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.commands.envelope import Envelope, Transaction
from gateway.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One request as a transport received it. ``client`` describes the sender (e.g. the
    MQTT topic or a Modbus peer) for the audit trail; ``notes`` are the transport's own
    remarks for it (e.g. ``response_topic_refused``)."""

    meter: str
    action: str
    payload: bytes
    retained: bool = False
    source: str = "mqtt"
    client: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded request: the action, its envelope (fields, transaction, dry run) and who
    sent it."""

    meter: str
    action: str
    envelope: Envelope
    source: str = "mqtt"
    client: str = ""
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, meter: str, action: str, fields: Mapping[str, Any], *, source: str,
           client: str = "", transaction: Transaction | None = None,
           dry_run: bool = False) -> Command:
        """A request made by code: ``fields`` are the action's own members."""
        return cls(meter, action, Envelope(dict(fields), transaction, dry_run), source, client)

    @property
    def fields(self) -> dict[str, Any]:
        """The action's own fields (everything but ``transaction`` and ``dry_run``)."""
        return self.envelope.fields()


@dataclass(frozen=True, slots=True)
class CommandResponse:
    """The one answer to a request; ``code`` is None when ``status`` is "ok"."""

    meter: str
    action: str
    status: str
    data: Any = None
    error: str | None = None
    transaction: Transaction | None = None
    code: ErrorCode | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "data": self.data, "error": self.error,
                "code": None if self.code is None else str(self.code),
                "transaction": self.transaction, "meter": self.meter, "action": self.action}

    def encode(self) -> bytes:
        return json.dumps(self.as_json(), separators=(",", ":"), default=str).encode()


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request that ran (or was refused) and its answer."""

    command: Command
    response: CommandResponse

    @property
    def succeeded(self) -> bool:
        """The action was carried out: answered ok and not a dry run."""
        return self.response.ok and not self.command.envelope.dry_run
