"""Typed access to the fields of a meter's JSON reply.

Every getter names the field it looked at, so a bad reply becomes
``MeterProtocolError(meter, "expected a decimal string", field="ranges[0].rows[0][2]")``
instead of a ``KeyError`` or ``TypeError`` deep inside the client.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import MeterProtocolError

MAX_STAMP: Final = 2.0**37  # Unix seconds: beyond the year 6000 a timestamp is garbage
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Fields:
    """The field checks for one meter's replies."""

    meter: str

    def error(self, field: str, message: str) -> MeterProtocolError:
        return MeterProtocolError(self.meter, message, field=field)

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if type(value) is not dict:
            raise self.error(field, f"expected an object, got {_kind(value)}")
        return value

    def array(self, value: Any, field: str) -> list[Any]:
        if type(value) is not list:
            raise self.error(field, f"expected an array, got {_kind(value)}")
        return value

    def text(self, value: Any, field: str) -> str:
        if type(value) is not str:
            raise self.error(field, f"expected a string, got {_kind(value)}")
        return value

    def number(self, value: Any, field: str) -> float:
        if type(value) is not float and type(value) is not int:
            raise self.error(field, f"expected a number, got {_kind(value)}")
        number = _float(value)
        if not math.isfinite(number):
            raise self.error(field, f"expected a finite number, got {_kind(value)}")
        return number

    def optional_number(self, value: Any, field: str) -> float | None:
        return None if value is None else self.number(value, field)

    def integer(self, value: Any, field: str) -> int:
        if type(value) is int:
            return value
        raise self.error(field, f"expected an integer, got {_kind(value)}")

    def decimal(self, value: Any, field: str) -> int:
        """An int64 sent as a decimal string, converted exactly (never through float)."""
        number = None
        if type(value) is str:
            with contextlib.suppress(ValueError):
                number = int(value)
        if number is None:
            raise self.error(field, f"expected a decimal string, got {_kind(value)}")
        if not INT64_MIN <= number <= INT64_MAX:
            raise self.error(field, f"expected a 64-bit integer, got {_kind(value)}")
        return number

    def stamp(self, value: Any, field: str) -> float:
        """A timestamp: Unix seconds as a decimal string (a number is accepted too)."""
        stamp = math.nan
        if type(value) is str:
            with contextlib.suppress(ValueError):
                stamp = float(value)
        elif type(value) is int or type(value) is float:
            stamp = _float(value)
        if 0 <= stamp < MAX_STAMP:
            return stamp
        raise self.error(field, f"expected a timestamp string, got {_kind(value)}")


def _float(value: int | float) -> float:
    """``float(value)``, infinite for an integer too large for a float."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _kind(value: Any) -> str:
    """A short description of a JSON value for an error text (strings are truncated)."""
    if value is None:
        return "nothing (missing or null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        shown = repr(value)
        return f"the number {shown if len(shown) <= 40 else shown[:37] + '...'}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
