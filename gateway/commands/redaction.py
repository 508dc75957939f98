"""What of a request or a configuration value may be shown in audit events, logs, responses
and dry-run answers: the vocabulary of :mod:`gateway.secret` (members with a secret-looking
name at any depth, whole values under a secret-looking configuration path, tokens in texts)
applied to the command path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gateway.commands.envelope import ENVELOPE
from gateway.secret import MASK as _MASK
from gateway.secret import is_secret_name, mask_text, masked, masked_at

MASK: Final = _MASK
__all__ = ["MASK", "is_secret_name", "mask", "mask_at", "mask_text", "shown_request"]


def mask(value: object) -> object:
    """``value`` with every member whose name looks secret, at any depth, as ``***``."""
    return masked(value)


def mask_at(path: str, value: object) -> object:
    """A config value for display: all of it masked when ``path`` names a secret."""
    return masked_at(path, value)


def shown_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """A request's own fields for the audit trail, secret-looking values masked."""
    fields = {k: v for k, v in body.items() if k not in ENVELOPE}
    path = fields.get("path")
    if isinstance(path, str) and "value" in fields:
        fields["value"] = masked_at(path, fields["value"])
    name = fields.get("name")  # lua/var/set of a variable named like a secret
    if isinstance(name, str) and "value" in fields and is_secret_name(name):
        fields["value"] = MASK
    shown = masked(fields)
    assert isinstance(shown, dict)
    return shown
