"""JSON trees addressed by path, with the WebAPI's ``filter`` and ``max-depth`` shaping
(egauge-webapi §0): ``filter={a,b}`` keeps members, ``[0,3:5]`` keeps array elements,
and either may nest (``{reg[7:8{addr}]}``); past ``max-depth`` an object becomes its list
of member names and an array its length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.simulator.reply import QueryError

Json = Any


def segments(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _step(node: Json, key: str) -> tuple[bool, Json]:
    if isinstance(node, dict):
        return (key in node, node.get(key))
    if isinstance(node, list) and key.isdigit() and int(key) < len(node):
        return (True, node[int(key)])
    return (False, None)


def lookup(root: Json, path: Sequence[str]) -> Json:
    """The value at ``path``; a QueryError names the first missing part."""
    node = root
    for i, key in enumerate(path):
        found, node = _step(node, key)
        if not found:
            raise QueryError(f"Unknown path: /{'/'.join(path[: i + 1])}.")
    return node


def exists(root: Json, path: Sequence[str]) -> bool:
    node = root
    for key in path:
        found, node = _step(node, key)
        if not found:
            return False
    return True


def limit_depth(value: Json, depth: int) -> Json:
    if depth <= 1:
        if isinstance(value, dict):
            return list(value)
        if isinstance(value, list):
            return len(value)
        return value
    if isinstance(value, dict):
        return {k: limit_depth(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [limit_depth(v, depth - 1) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class _Spec:
    """A parsed filter: member names (``{}``) or index ranges (``[]``), each with an
    optional sub-filter."""

    members: tuple[tuple[str, _Spec | None], ...] = ()
    ranges: tuple[tuple[int, int, _Spec | None], ...] = ()
    is_object: bool = True


class _FilterParser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self) -> QueryError:
        return QueryError(f"Invalid filter: {self.text!r}.")

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def parse(self) -> _Spec:
        opener = self.peek()
        if opener not in ("{", "["):
            raise self.fail()
        self.pos += 1
        members: list[tuple[str, _Spec | None]] = []
        ranges: list[tuple[int, int, _Spec | None]] = []
        while True:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in ",{}[]":
                self.pos += 1
            word = self.text[start : self.pos].strip()
            if not word:
                raise self.fail()
            sub = self.parse() if self.peek() in ("{", "[") else None
            if opener == "{":
                members.append((word, sub))
            else:
                low, _, high = word.partition(":")
                if not low.isdigit() or not (high or low).isdigit():
                    raise self.fail()
                ranges.append((int(low), int(high or low), sub))
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() != ("}" if opener == "{" else "]"):
                raise self.fail()
            self.pos += 1
            return _Spec(tuple(members), tuple(ranges), opener == "{")


def _apply(value: Json, spec: _Spec | None) -> Json:
    if spec is None:
        return value
    if isinstance(value, list) and spec.is_object:
        return [_apply(v, spec) for v in value]
    if isinstance(value, dict) and spec.is_object:
        return {name: _apply(value[name], sub) for name, sub in spec.members if name in value}
    if isinstance(value, list):
        return [_apply(v, sub) for low, high, sub in spec.ranges for v in value[low : high + 1]]
    return value


def shape(value: Json, params: dict[str, str]) -> Json:
    """Apply ``filter`` and then ``max-depth`` from the query parameters."""
    if "filter" in params:
        parser = _FilterParser(params["filter"])
        spec = parser.parse()
        if parser.pos != len(parser.text):
            raise parser.fail()
        value = _apply(value, spec)
    if "max-depth" in params:
        text = params["max-depth"]
        if not text.isdigit() or int(text) < 1:
            raise QueryError(f"Invalid max-depth: {text!r}.")
        value = limit_depth(value, int(text))
    return value
