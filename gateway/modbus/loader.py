"""Register maps by name: the built-in ones (package data in ``gateway/modbus/maps/``) or a
user's map file, checked by :mod:`gateway.modbus.mapfile`."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from gateway.config import load_yaml
from gateway.errors import MappingError
from gateway.modbus.mapfile import parse_mapping
from gateway.modbus.mapping import BUILTIN, RegisterMap


def builtin_path(name: str) -> Path:
    """The file of a built-in map (package data, in a checkout and an installed wheel alike)."""
    return Path(str(resources.files("gateway.modbus").joinpath("maps", f"{name}.yaml")))


def load_mapping(spec: str) -> RegisterMap:
    """A built-in map by name (``default``, ``sunspec``) or a map file by path."""
    if spec in BUILTIN:
        path, source = builtin_path(spec), spec
    elif "/" not in spec and not spec.endswith((".yaml", ".yml")):
        hint = difflib.get_close_matches(spec, BUILTIN, n=1)
        tail = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise MappingError([f"unknown built-in mapping {spec!r}{tail}"], spec)
    else:
        path, source = Path(spec), spec
    data = load_yaml(path, error=MappingError)
    return parse_mapping(data, source, load_mapping)
