"""A request's payload as the router decodes it: :func:`decode_envelope` checks the whole
(size, JSON object, nesting, ``transaction`` and ``dry_run``); :class:`Fields` checks one
action's members and rejects the ones nobody read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.config import allowlist
from gateway.errors import CommandError

ENVELOPE: Final = ("transaction", "dry_run")
MAX_TRANSACTION_LEN: Final = 128
DEVICE_KEYS: Final = ("path", "interface", "link", "mfg", "model", "name", "prot", "quality",
                      "sn", "index")
Transaction = str | int


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
    _check_tree(body, max_depth)
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


def _check_tree(value: Any, max_depth: int) -> None:
    """Refuse (``invalid``) a decoded JSON value nested deeper than ``max_depth`` or holding
    a string (a member name included) that is not valid Unicode -- a lone surrogate such as
    ``"\\ud800"``, which JSON can spell but no URL, header or UTF-8 body can carry. Without
    recursion."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if level > max_depth:
                raise invalid(f"the payload nests deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise invalid(f"the payload holds a lone surrogate (\\u{ord(bad):04x}), which is "
                      "not valid Unicode") from None


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

    @property
    def action(self) -> str:
        return self._action

    def has(self, name: str) -> bool:
        """Whether the payload has member ``name`` (without reading it)."""
        return name in self._payload

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
