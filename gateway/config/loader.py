"""gateway.yaml -> a frozen, typed :class:`~gateway.config.types.Config`; every problem at once.

:func:`load_config` / :func:`parse_config` build the values (the checks of each section live in
:mod:`gateway.config.sections`). This is the project's only YAML user: mapping files are read
with :func:`load_yaml`.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.config.bounds import MAX_FILE_BYTES, MAX_VALUES, tree_problem
from gateway.config.files import read_regular
from gateway.config.schema import Context
from gateway.config.sections import build
from gateway.config.types import Config
from gateway.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """``safe_load`` that refuses a key given twice in one mapping (plain YAML keeps the last)
    and stops composing past :data:`~gateway.config.bounds.MAX_VALUES` nodes (a file of a
    million tiny values would otherwise take a minute to parse)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._nodes += 1
        if self._nodes > MAX_VALUES:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_VALUES} values", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, error: type[ConfigError] = ConfigError) -> object:
    """A YAML file's content (safe types only). A missing file, a syntax error, a duplicate
    key or a file beyond the bounds of :mod:`gateway.config.bounds` (size, nesting, number of
    values, invalid text) raises ``error`` with one problem line naming the file (and
    line:column)."""
    name = str(path)
    try:
        raw = read_regular(path, MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise error([f"{name}: cannot read: {reason}"], name) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise error([f"{name}: larger than {MAX_FILE_BYTES} bytes"], name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error([f"{name}: not UTF-8 text ({exc.reason})"], name) from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)
    except RecursionError as exc:
        raise error([f"{name}: invalid YAML: nested too deeply"], name) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        what = " ".join((exc.problem or exc.context or "syntax error").split())
        raise error([f"{where}: invalid YAML: {what}"], name) from exc
    except yaml.YAMLError as exc:  # one line: the reader's errors span two
        raise error([f"{name}: invalid YAML: {' '.join(str(exc).split())}"], name) from exc
    except (ValueError, OverflowError) as exc:  # a value no type takes: date 2001-02-30
        raise error([f"{name}: invalid YAML: {exc}"], name) from exc
    problem = tree_problem(data)
    if problem:
        raise error([f"{name}: {problem}"], name)
    return data


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and check a configuration file; raise :class:`ConfigError` listing every problem.

    ``env`` (default: ``os.environ``) serves ``${NAME}`` expansion and ``CREDENTIALS_DIRECTORY``.
    """
    data = load_yaml(path)
    return parse_config(data, str(path), env, Path(path).resolve().parent)


def parse_config(data: object, source: str = "<config>", env: Mapping[str, str] | None = None,
                 base_dir: str | Path | None = None) -> Config:
    """Check a parsed YAML tree. Relative file names resolve against ``base_dir`` (default: the
    working directory). Literal passwords are refused when ``source`` is a world-readable file."""
    ctx = Context(os.environ if env is None else env, Path(base_dir or Path.cwd()))
    config = build(ctx, data, source)
    if ctx.plain_secrets:
        _refuse_world_readable(ctx.problems, ctx.plain_secrets, source)
    if ctx.problems or config is None:
        raise ConfigError(ctx.problems or ["(top level): no configuration"], source)
    return config


def _refuse_world_readable(problems: list[str], paths: list[str], source: str) -> None:
    try:
        st = os.stat(source)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o004:
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        problems.extend(
            f"{path}: plain-text password in a world-readable file (mode {mode}); use ${{ENV}}, "
            "password_file or password_credential, or chmod o-r the file"
            for path in paths)


def load_or_report(path: str | Path) -> Config | None:
    """The config at ``path``, or ``None`` after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return None
