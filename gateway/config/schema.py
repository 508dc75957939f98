"""Typed reads from a parsed YAML tree, collecting every problem as ``path: message (got value)``.

A :class:`Section` wraps one mapping of the tree. Each read returns the typed value, or the
default after recording a problem, so a whole file is checked in one pass and every problem is
reported at once. String values go through ``${NAME}`` / ``${NAME:-default}`` expansion first.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from gateway.config.bounds import has_surrogate

T = TypeVar("T")

_ENV_REF: Final = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


class Missing:
    """The marker for a key that is absent (or whose value could not be expanded)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


class Expanded(str):
    """A string that came from a ``${...}`` expansion: typed reads may convert it."""

    __slots__ = ()


def show(value: object, secret: bool = False) -> str:
    """A value as a problem line echoes it: YAML-like scalars, short reprs, secrets masked."""
    if secret:
        return "'***'"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(str(value)) if isinstance(value, Expanded) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class Context:
    """What every read of one configuration shares: env, base directory, the problem list."""

    env: Mapping[str, str]
    base_dir: Path
    problems: list[str] = field(default_factory=list)
    plain_secrets: list[str] = field(default_factory=list)  # paths of literal passwords

    def problem(self, path: str, message: str, got: object = MISSING, secret: bool = False) -> None:
        tail = "" if got is MISSING else f" (got {show(got, secret)})"
        self.problems.append(f"{path}: {message}{tail}")

    def expand(self, path: str, text: str) -> str | Missing:
        """``${NAME}`` and ``${NAME:-default}`` (default when unset or empty); ``$${`` is ``${``."""
        if "${" not in text:
            return text
        failed = referenced = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal failed, referenced
            if match.group(0) == "$${":
                return "${"
            referenced = True
            body = match.group(1)
            if body is None:
                failed = True
                self.problem(path, "unclosed ${ reference")
                return ""
            name, sep, default = body.partition(":-")
            if not _ENV_NAME.fullmatch(name):
                failed = True
                self.problem(path, f"bad environment reference ${{{body}}}")
                return ""
            value = self.env.get(name, "")
            if value:
                return value
            if sep:
                return default
            if name not in self.env:
                failed = True
                self.problem(path, f"environment variable {name} is not set")
            return ""

        result = _ENV_REF.sub(substitute, text)
        if not failed and has_surrogate(result):  # an environment value of undecodable bytes
            failed = True
            self.problem(path, "an environment variable's value is not valid text")
        if failed:
            return MISSING
        return Expanded(result) if referenced else result

    def resolve(self, name: str) -> Path:
        """A file name from the configuration, relative to the configuration's directory."""
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.base_dir / path


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Section:
    """One mapping of the tree, its path, and the keys it may have."""

    def __init__(self, ctx: Context, path: str, data: Mapping[object, object],
                 known: Collection[str]) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(str(key), sorted(known), n=1)
                why = f"unknown key (did you mean {hint[0]!r}?)" if hint else "unknown key"
                ctx.problem(join(path, str(key)), why)

    @classmethod
    def of(cls, ctx: Context, path: str, data: object, known: Collection[str],
           what: str = "a mapping") -> Section | None:
        """``data`` as a section (``null`` counts as empty), or ``None`` after a problem."""
        if data is None or data is MISSING:
            return cls(ctx, path, {}, known)
        if not isinstance(data, Mapping):
            ctx.problem(path or "(top level)", f"must be {what}", data)
            return None
        return cls(ctx, path, data, known)

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, required: bool = False) -> object:
        """The value (strings expanded), ``MISSING`` when absent or not expandable."""
        if key not in self.data:
            if required:
                self.ctx.problem(self.at(key), "required key missing")
            return MISSING
        value = self.data[key]
        return self.ctx.expand(self.at(key), value) if isinstance(value, str) else value

    def fail(self, key: str, message: str, got: object, default: T, secret: bool = False) -> T:
        self.ctx.problem(self.at(key), message, got, secret)
        return default

    def string(self, key: str, default: str, pattern: re.Pattern[str] | None = None,
               required: bool = False) -> str:
        value = self.raw(key, required)
        if value is MISSING:
            return default
        if not isinstance(value, str) or not value:
            return self.fail(key, "must be a non-empty string", value, default)
        if pattern is not None and not pattern.fullmatch(value):
            return self.fail(key, f"must match {pattern.pattern}", value, default)
        return str(value)

    def optional_string(self, key: str) -> str | None:
        value = self.raw(key)
        if value is MISSING or value is None:
            return None
        if not isinstance(value, str) or not value:
            return self.fail(key, "must be a non-empty string or null", value, None)
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if isinstance(value, Expanded) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            return self.fail(key, "must be true or false", value, default)
        return value

    def integer(self, key: str, default: int, lo: int, hi: int | None = None,
                message: str = "") -> int:
        value = self.raw(key)
        if value is MISSING:
            return default
        number = _to_int(value)
        if number is None or number < lo or (hi is not None and number > hi):
            bound = f"{lo}-{hi}" if hi is not None else f">= {lo}"
            return self.fail(key, message or f"must be an integer {bound}", value, default)
        return number

    def optional_integer(self, key: str, lo: int) -> int | None:
        """An integer >= ``lo``, or ``None`` when absent or ``null``."""
        value = self.raw(key)
        if value is MISSING or value is None:
            return None
        number = _to_int(value)
        if number is None or number < lo:
            return self.fail(key, f"must be an integer >= {lo} or null", value, None)
        return number

    def number(self, key: str, default: float, minimum: float = 0.0,
               inclusive: bool = False) -> float:
        value = self.raw(key)
        if value is MISSING:
            return default
        number = _to_float(value)
        if number is None or number < minimum or (number == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            return self.fail(key, f"must be a number {bound}", value, default)
        return number

    def choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        options = tuple(choices)
        value = self.raw(key)
        if value is MISSING:
            return default
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        if text not in options:
            listed = ", ".join(options[:-1]) + f" or {options[-1]}"
            return self.fail(key, f"must be {listed}", value, default)
        return text

    def section(self, key: str, known: Collection[str], what: str = "a mapping"
                ) -> Section | None:
        return Section.of(self.ctx, self.at(key), self.raw(key), known, what)

    def existing_file(self, key: str, value: str) -> str | None:
        """The absolute path of an existing file named by ``value``, or ``None`` after a problem."""
        path = self.ctx.resolve(value)
        if not path.is_file():
            return self.fail(key, "no such file", value, None)
        return str(path)


def _to_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Expanded):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _to_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    number: float
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, Expanded):
            number = float(value.strip())
        else:
            return None
    except (ValueError, OverflowError):  # not a number, or an integer beyond any float
        return None
    return number if math.isfinite(number) else None
