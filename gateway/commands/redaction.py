"""What of a request or a configuration value may be shown: the values of secret-looking
members (``password``, ``hash``, ``key``, ...) become ``***`` in audit events, logs and
dry-run answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gateway.commands.envelope import ENVELOPE

MASK: Final = "***"
_SECRET_WORDS: Final = ("pass", "hash", "key", "secret", "token", "certificate", "jwt")


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
    name = fields.get("name")  # lua/var/set of a variable named like a secret
    if isinstance(name, str) and "value" in fields and is_secret_name(name):
        fields["value"] = MASK
    return {k: MASK if is_secret_name(k) else mask(v) for k, v in fields.items()}
