"""Secrets: a string that never shows itself, and the one vocabulary of what looks secret.

:class:`Secret` holds a password or token; ``str()`` and ``repr()`` print ``***``.

Everything that shows or publishes data -- the log renderer, audit events, command
responses and dry-run calls, the status page, the simulator's call recorder -- masks it with
the functions here, so that one list decides what counts as secret:

- :func:`is_secret_name`: a member, key or path segment whose name contains one of
  :data:`SECRET_WORDS` (case-blind: ``password``, ``mqtt_passwd``, ``pwd``, ``api_key``,
  ``Authorization``, ``client_secret``, ``hash``, ...);
- :func:`mask_text`: JWT-shaped tokens and ``Bearer`` / ``Basic`` credentials inside a text;
- :func:`masked`: a copy of a value in which every member with a secret name, at any depth
  of dicts and lists, is ``***``, every :class:`Secret` is ``***`` and every string went
  through :func:`mask_text`;
- :func:`masked_member`: one member's value, ``***`` when its name is secret;
- :func:`masked_at`: the same for a configuration value, all of it masked when its path has
  a secret segment (``/user/owner/hash``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

MASK: Final = "***"
SECRET_WORDS: Final = ("pass", "pwd", "secret", "token", "jwt", "hash", "key", "certificate",
                       "authorization", "authorisation", "cookie", "credential", "bearer")
MAX_DEPTH: Final = 64  # deeper containers are shown as *** as a whole
_SECRET_NAME: Final = re.compile("|".join(SECRET_WORDS), re.IGNORECASE)
# A JWT: a header segment that is base64url JSON ("eyJ"), or three long base64url segments.
_JWT: Final = re.compile(
    r"(?<![\w.-])(?:eyJ[\w-]*\.[\w-]+\.[\w-]*|[\w-]{16,}\.[\w-]{16,}\.[\w-]{16,})(?![\w.-])",
    re.ASCII)
_SCHEME: Final = re.compile(r"(?i)\b((?:bearer|basic)\s+)[\w.~+/=-]+", re.ASCII)


class Secret:
    """Holds a password or token; ``str()`` and ``repr()`` print ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: only for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def is_secret_name(name: object) -> bool:
    """Whether a member, key or path segment named ``name`` looks like it holds a secret."""
    return _SECRET_NAME.search(str(name)) is not None


def mask_text(text: str) -> str:
    """``text`` with JWT-looking tokens and ``Bearer``/``Basic`` credentials as ``***``."""
    if "." not in text and "earer" not in text and "asic" not in text:
        return text
    return _SCHEME.sub(r"\1" + MASK, _JWT.sub(MASK, text))


def masked(value: object, *, keep_scalars: bool = False) -> object:
    """A copy of ``value`` fit to show: members with a secret name (at any depth of dicts,
    lists, tuples and sets) become ``***``, so do :class:`Secret` values; strings go through
    :func:`mask_text`. ``keep_scalars`` keeps ``None``, booleans and numbers under secret
    names (for log keys such as ``token_lifetime_s=600``, which are the gateway's own)."""
    return _masked(value, keep_scalars, 0)


def masked_member(name: object, value: object, *, keep_scalars: bool = False) -> object:
    """The value of a member called ``name`` fit to show (``***`` when the name is secret)."""
    return _member(name, value, keep_scalars, 0)


def masked_at(path: str, value: object) -> object:
    """A configuration value at ``path`` fit to show: all of it ``***`` when a segment of the
    path has a secret name, otherwise :func:`masked`."""
    if any(is_secret_name(segment) for segment in path.split("/") if segment):
        return MASK
    return masked(value)


def _masked(value: object, keep: bool, depth: int) -> object:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return MASK
        return {k: _member(k, v, keep, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        if depth >= MAX_DEPTH:
            return MASK
        return [_masked(v, keep, depth + 1) for v in value]
    return value


def _member(name: object, value: object, keep: bool, depth: int) -> object:
    if not is_secret_name(name):
        return _masked(value, keep, depth)
    if keep and (value is None or isinstance(value, bool | int | float)):
        return value
    return MASK
