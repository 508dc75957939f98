"""Writing configuration files for tests and reading back their problems."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

ENV = {"PW": "s3cret-pw"}
METER = "{id: main, url: 'http://meter.local', username: owner, password: '${PW}'}"


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    path.chmod(0o600)
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=ENV if env is None else env)
    return list(info.value.problems)


def meter(extra: str = "", **keys: str) -> str:
    """One meter as a YAML flow mapping: the valid METER plus ``extra`` keys."""
    fields = {"id": "main", "url": "'http://meter.local'", "username": "owner",
              "password": "'${PW}'", **keys}
    body = ", ".join(f"{k}: {v}" for k, v in fields.items() if v != "DROP")
    return "{" + body + (", " + extra if extra else "") + "}"
