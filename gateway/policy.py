"""What a command request may contain, what it may do, and what of it may be shown.

- :func:`decode_envelope` checks the payload as a whole (size, JSON object, nesting,
  ``transaction`` and ``dry_run``); :class:`Fields` checks one action's members.
- A :class:`Policy` is built from a meter's ``commands.allow`` entries (grammar in
  :mod:`gateway.allowlist`). A request needs exactly one permission, a :class:`Need`; the
  policy grants it or not. An empty policy grants nothing.
- :func:`mask` replaces the values of secret-looking members (``password``, ``hash``,
  ``key``, ...) so that audit events, logs and dry-run answers never carry them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from gateway import allowlist
from gateway.errors import CommandError, ConfigError

MASK: Final = "***"
ENVELOPE: Final = ("transaction", "dry_run")
MAX_TRANSACTION_LEN: Final = 128
DEVICE_KEYS: Final = ("path", "interface", "link", "mfg", "model", "name", "prot", "quality",
                      "sn", "index")
Transaction = str | int
_SECRET_WORDS: Final = ("pass", "hash", "key", "secret", "token", "certificate", "jwt")


class Need(NamedTuple):
    """The permission one request needs: ``kind`` as in :data:`gateway.allowlist.KINDS`
    (``config`` means writing, ``config-read`` reading) and its argument."""

    kind: str
    arg: str = ""

    def __str__(self) -> str:
        if not self.arg:
            return self.kind
        return f"{self.kind}:{self.arg}"


class Policy:
    """The parsed ``commands.allow`` list of one meter."""

    __slots__ = ("_entries",)

    def __init__(self, allow: Iterable[str] = ()) -> None:
        entries: list[allowlist.AllowEntry] = []
        problems: list[str] = []
        for text in allow:
            parsed = allowlist.parse(text)
            if isinstance(parsed, str):
                problems.append(f"commands.allow entry {text!r}: {parsed}")
            else:
                entries.append(parsed)
        if problems:
            raise ConfigError(problems)
        self._entries = tuple(entries)

    def __repr__(self) -> str:
        return f"Policy({[str(Need(*e)) for e in self._entries]!r})"

    def allows(self, need: Need) -> bool:
        """Whether some entry grants ``need``."""
        return any(_grants(entry, need) for entry in self._entries)


def _grants(entry: allowlist.AllowEntry, need: Need) -> bool:
    if need.kind == "config-read":
        return entry.kind in ("config", "config-read") and allowlist.covers(entry.arg, need.arg)
    if need.kind == "config":
        return entry.kind == "config" and allowlist.covers(entry.arg, need.arg)
    return entry.kind == need.kind and entry.arg == need.arg


def is_secret_name(name: str) -> bool:
    """Whether a member or path name looks like it holds a secret."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def mask(value: object) -> object:
    """``value`` with every object member whose name looks secret replaced by ``***``."""
    if isinstance(value, dict):
        return {
            k: (MASK if is_secret_name(str(k)) else mask(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def mask_at(path: str, value: object) -> object:
    """A config value for display: all of it masked when ``path`` names a secret."""
    if any(is_secret_name(segment) for segment in path.split("/")):
        return MASK
    return mask(value)


def shown_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """A request's own fields for the audit trail, secret-looking values masked."""
    fields = {k: v for k, v in body.items() if k not in ENVELOPE}
    path = fields.get("path")
    if isinstance(path, str) and "value" in fields:
        fields["value"] = mask_at(path, fields["value"])
    return {k: MASK if is_secret_name(k) else mask(v) for k, v in fields.items()}


# -- the payload --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded request payload: the JSON object and its two router fields."""

    body: dict[str, Any]
    transaction: Transaction | None
    dry_run: bool

    def fields(self) -> dict[str, Any]:
        """The action's own fields."""
        return {k: v for k, v in self.body.items() if k not in ENVELOPE}


def decode_envelope(payload: bytes, *, max_bytes: int, max_depth: int) -> Envelope:
    """The payload as an :class:`Envelope`; ``CommandError("invalid")`` naming the problem."""
    if len(payload) > max_bytes:
        raise invalid(f"the payload is larger than {max_bytes} bytes")
    if not payload.strip():
        raise invalid("the payload is empty; send a JSON object such as {}")
    try:
        body = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        text = str(exc) or type(exc).__name__
        raise invalid(f"the payload is not JSON ({text[:120]})") from None
    if not isinstance(body, dict):
        raise invalid("the payload must be a JSON object")
    if _depth(body) > max_depth:
        raise invalid(f"the payload nests deeper than {max_depth} levels")
    transaction = body.get("transaction")
    if transaction is not None and not _valid_transaction(transaction):
        raise invalid(f"'transaction' must be a string of 1..{MAX_TRANSACTION_LEN} "
                      "characters or an integer")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise invalid("'dry_run' must be true or false")
    return Envelope(body, transaction, dry_run)


def _valid_transaction(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and 0 < len(value) <= MAX_TRANSACTION_LEN


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def invalid(message: str) -> CommandError:
    return CommandError("invalid", message)


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def article(kind: str) -> str:
    """``kind`` with its article for an error text ("number" reads "an integer")."""
    return {"number": "an integer", "object": "an object", "array": "an array"}.get(
        kind, f"a {kind}")


class Fields:
    """Reads one action's payload members and rejects the ones nobody read."""

    def __init__(self, action: str, payload: Mapping[str, Any]) -> None:
        self._action = action
        self._payload = payload
        self._read: set[str] = set()

    def take(self, name: str, kind: str, *, required: bool = False, default: Any = None) -> Any:
        """Member ``name`` if it has JSON type ``kind`` ("any" accepts every type; "number"
        means a whole number)."""
        self._read.add(name)
        if name not in self._payload:
            if required:
                raise invalid(f"{self._action}: the field {name!r} is required")
            return default
        value = self._payload[name]
        if kind != "any" and (json_kind(value) != kind
                              or (kind == "number" and not isinstance(value, int))):
            raise invalid(f"{self._action}: {name!r} must be {article(kind)}, "
                          f"got {json_kind(value)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self._payload) - self._read)
        if unknown:
            raise invalid(f"{self._action}: unknown field(s) {', '.join(map(repr, unknown))}")

    def device(self, *, required: bool) -> dict[str, Any] | None:
        """``device``: /ctrl device attributes (``{"model": "PRM3", "sn": "..."}``)."""
        device = self.take("device", "object", required=required)
        if device is None:
            return None
        if not device:
            raise invalid("'device' needs at least one attribute, e.g. {\"model\": \"PRM3\"}")
        for key, value in device.items():
            if key not in DEVICE_KEYS:
                raise invalid(f"'device': unknown attribute {key!r}; "
                              f"known: {', '.join(DEVICE_KEYS)}")
            if key == "index":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            elif key in ("interface", "path"):
                ok = isinstance(value, str) or (
                    isinstance(value, list) and all(isinstance(v, str) for v in value))
            else:
                ok = isinstance(value, str)
            if not ok:
                raise invalid(f"'device': attribute {key!r} has the wrong type")
        return dict(device)

    def config_path(self) -> str:
        """``path``: an absolute configuration path below the root."""
        path: str = self.take("path", "string", required=True)
        if not allowlist.is_config_path(path) or path == "/":
            raise invalid(f"'path' must be a configuration path such as /net/hostname, "
                          f"got {path!r}")
        return path
