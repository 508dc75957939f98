"""What a configuration (or mapping) file may be at most, checked before any of it is read
as configuration: its size, how deep it nests, how many values it holds (an alias counts
each time it is used, so an "alias bomb" of a few lines stops here instead of expanding to
billions of values), and that every string is valid text: YAML's ``"\\udc80"`` and ``"\\0"``
escapes make lone surrogates and NUL characters, which no file name, host or MQTT topic can
carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

MAX_FILE_BYTES: Final = 4 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_VALUES: Final = 50_000


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def tree_problem(data: object) -> str:
    """The first reason ``data`` (a parsed YAML tree) is unacceptable, or ``""``."""
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"more than {MAX_VALUES} values (an alias counts each time it is used)"
        if depth > MAX_DEPTH:
            return f"{path or '(top level)'}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, str):
            if has_surrogate(value):
                return f"{path or '(top level)'}: not valid text (a lone surrogate)"
            if "\0" in value:
                return f"{path or '(top level)'}: not valid text (a NUL character)"
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name = str(key)
                if isinstance(key, str) and has_surrogate(key):
                    return f"{path or '(top level)'}: a key is not valid text (a lone surrogate)"
                stack.append((item, f"{path}.{name}" if path else name, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
    return ""
