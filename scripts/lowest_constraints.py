#!/usr/bin/env python3
"""Print a pip constraints file that pins every requirement of pyproject.toml -- the build
system's, the runtime dependencies and every extra -- to its lower bound (``name>=X`` ->
``name==X``), for ``scripts/test-lowest``. A requirement without a ``>=`` lower bound is an
error: every bound must be one the tests were run with. Standard library only."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*)")
_LOWER = re.compile(r">=\s*(?P<version>[^,\s]+)")


def requirements(pyproject: dict[str, object]) -> list[str]:
    build = pyproject.get("build-system", {})
    project = pyproject.get("project", {})
    assert isinstance(build, dict)
    assert isinstance(project, dict)
    found = list(build.get("requires", [])) + list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        found.extend(extra)
    return found


def lowest(requirement: str) -> tuple[str, str | None]:
    """The normalised name and the lower bound of one requirement (None: it has none)."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"cannot read the requirement {requirement!r}")
    name = re.sub(r"[-_.]+", "-", match["name"]).lower()
    bound = _LOWER.search(match["spec"])
    return name, bound["version"] if bound else None


def constraints(pyproject: dict[str, object], unbounded_ok: frozenset[str]) -> list[str]:
    pins: dict[str, str] = {}
    missing = []
    for requirement in requirements(pyproject):
        name, version = lowest(requirement)
        if version is None:
            if name not in unbounded_ok:
                missing.append(requirement)
            continue
        if pins.get(name, version) != version:
            raise ValueError(f"{name}: two lower bounds ({pins[name]}, {version})")
        pins[name] = version
    if missing:
        raise ValueError("no lower bound (>=): " + ", ".join(missing))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    try:
        lines = constraints(data, unbounded_ok=frozenset({"wheel"}))
    except ValueError as exc:
        print(f"lowest_constraints: {exc}", file=sys.stderr)
        return 1
    print("# the lowest versions pyproject.toml allows (scripts/lowest_constraints.py)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
