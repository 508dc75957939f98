"""Hostile configuration files through :func:`load_config`: deep nesting, alias bombs, huge
files, invalid text, numbers beyond any float, endless password files, and random bytes,
text and trees. Every one is a :class:`ConfigError` with precise problem lines -- never
another exception -- and none takes long."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Config, load_config
from gateway.config.bounds import MAX_FILE_BYTES, MAX_VALUES
from gateway.errors import ConfigError
from tests.support.config import ENV, METER, problems, write

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = yaml.safe_load((REPO / "gateway.yaml").read_text())
BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{b}' if b else 'x'] * 9)}]\n"
               for a, b in zip("abcdefghi", [None, *"abcdefgh"], strict=True))


def lines(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "gateway.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    name = str(path)
    return [line.replace(name, "FILE") for line in info.value.problems]


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("meters: " + "[" * 5000 + "]" * 5000,
                 ["FILE: invalid YAML: nested too deeply"], id="deep-flow"),
    pytest.param("meters:" + "".join(f"\n{' ' * (2 * i)}- " for i in range(1, 80)) + "x",
                 ["FILE: meters[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                  "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                  "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nested "
                  "deeper than 64 levels"], id="deep-block"),
    pytest.param(BOMB + "meters: *i\n",
                 [f"FILE: more than {MAX_VALUES} values (an alias counts each time it is used)"],
                 id="alias-bomb"),
    pytest.param("meters: [" + ",".join(["1"] * (MAX_VALUES + 5)) + "]",
                 [f"FILE:1:{len('meters: [') + 2 * (MAX_VALUES - 3) + 1}: invalid YAML: more than "
                  f"{MAX_VALUES} values"],  # nodes: the mapping, its key, the list, items
                 id="too-many-values"),
    pytest.param("#" * MAX_FILE_BYTES + "\nmeters: []",
                 [f"FILE: larger than {MAX_FILE_BYTES} bytes"], id="huge"),
    pytest.param(b"\x00\xff\xfe garbage \x80", ["FILE: not UTF-8 text (invalid start byte)"],
                 id="bytes"),
    pytest.param(b"\x1fmeters: []", ["FILE: invalid YAML: unacceptable character #x001f: "
                                     'special characters are not allowed in "<unicode '
                                     'string>", position 0'], id="control-character"),
    pytest.param(f'meters: [{METER}]\nmqtt: {{host: "bro\\0ker"}}',
                 ["FILE: mqtt.host: not valid text (a NUL character)"], id="nul"),
    pytest.param(f'meters: [{METER}]\nmqtt: {{base_topic: "egauge\\udc80"}}',
                 ["FILE: mqtt.base_topic: not valid text (a lone surrogate)"], id="surrogate"),
    pytest.param('"\\ud800": 1', ["FILE: (top level): a key is not valid text (a lone "
                                  "surrogate)"], id="surrogate-key"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{port: {'9' * 400}}}",
                 [f"mqtt.port: must be a port 1-65535 (got {'9' * 77}...)"], id="huge-int"),
    pytest.param(f"meters: [{METER}]\ngateway: {{shutdown_timeout_s: {'9' * 400}}}",
                 [f"gateway.shutdown_timeout_s: must be a number > 0 (got {'9' * 77}...)"],
                 id="int-beyond-float"),
    pytest.param(f"meters: [{METER}]\ngateway: {{state_dir: 2001-02-30}}",
                 ["FILE: invalid YAML: day is out of range for month"], id="impossible-date"),
    pytest.param('meters: [{id: a, url: "http://\\u00e9\\u00e9-\\u0000", username: u, '
                 "password: '${PW}'}]", ["FILE: meters[0].url: not valid text (a NUL "
                                         "character)"], id="url-nul"),
    pytest.param("meters: [{id: a, url: 'http://-.-', username: u, password: '${PW}'}]\n"
                 "mqtt: {enabled: false}", None, id="odd-but-ascii-host"),
    pytest.param('meters: [{id: a, url: "http://xn--a\\u00e9.local", username: u, '
                 "password: '${PW}'}]",
                 ["meters[0].url: must be http://HOST[:PORT] or https://HOST[:PORT] without a "
                  "path (got 'http://xn--aé.local')"], id="host-idna-refuses"),
    pytest.param(f"meters: [{METER}]\n---\nmeters: []",
                 ["FILE:2:1: invalid YAML: but found another document"],
                 id="two-documents"),
    pytest.param("!!python/object:os.system {}",
                 ["FILE:1:1: invalid YAML: could not determine a constructor for the tag "
                  "'tag:yaml.org,2002:python/object:os.system'"], id="python-tag"),
])
def test_hostile_files_get_precise_problem_lines(tmp_path: Path, text: str | bytes,
                                                 expected: list[str] | None) -> None:
    if expected is None:
        path = write(tmp_path, text if isinstance(text, str) else "")
        assert isinstance(load_config(path, env=ENV), Config)
        return
    assert lines(tmp_path, text) == expected


def test_a_password_file_that_never_ends_is_refused(tmp_path: Path) -> None:
    got = problems(tmp_path, "meters: [{id: a, url: 'http://a', username: u, "
                             "password_file: /dev/zero}]")
    assert got == ["meters[0].password_file: cannot read /dev/zero: not a regular file (a "
                   "FIFO, a device or a directory) (got '/dev/zero')"]
    (tmp_path / "long.txt").write_text("x" * 70_000)
    got = problems(tmp_path, "meters: [{id: a, url: 'http://a', username: u, "
                             "password_file: long.txt}]")
    assert got == [f"meters[0].password_file: {tmp_path / 'long.txt'} is larger than 65536 "
                   "characters (got 'long.txt')"]


def test_a_fifo_as_config_or_password_file_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opened for reading, it would wait for a writer: the start would hang
    with pytest.raises(ConfigError) as info:
        load_config(fifo, env=ENV)
    assert info.value.problems == (
        f"{fifo}: cannot read: not a regular file (a FIFO, a device or a directory)",)
    got = problems(tmp_path, "meters: [{id: a, url: 'http://a', username: u, "
                             f"password_file: {fifo}}}]")
    assert got == [f"meters[0].password_file: cannot read {fifo}: not a regular file (a FIFO, "
                   f"a device or a directory) (got '{fifo}')"]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env=ENV)  # a directory
    assert "not a regular file" in info.value.problems[0]


def test_an_environment_value_that_is_not_text_is_refused(tmp_path: Path) -> None:
    got = problems(tmp_path, f"meters: [{METER}]\nmqtt: {{host: '${{BAD}}'}}",
                   env={**ENV, "BAD": "host\udcff"})  # undecodable bytes, as os.environ has them
    assert got == ["mqtt.host: an environment variable's value is not valid text"]


keys = st.sampled_from(["gateway", "meters", "mqtt", "modbus", "http", "history", "shard",
                        "id", "url", "username", "password", "password_file", "port", "host",
                        "enabled", "tls", "ca_file", "allow_from", "commands", "allow",
                        "poll_interval_s", "timeout_s", "registers", "modbus_unit_id",
                        "loop_stall_s", "frame_timeout_s", "max_rows", "index", "count",
                        "base_topic", "homeassistant", "verify_tls", "local", "x"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=10), st.sampled_from(["${PW}", "${NOPE}", "${", "$${x}",
                                                           "http://a", "0.0.0.0", "-1", "1e999",
                                                           "/dev/null", "default", "5"]))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)


def mutated_example(draw: st.DrawFn) -> Any:
    """The documented example with a few values replaced by anything."""
    data = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 3))):
        node: Any = data
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict)
                                       else list(range(len(node)))))
            if not isinstance(node[key], dict | list):
                node[key] = draw(trees)
                break
            node = node[key]
    return data


@st.composite
def files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "text", "tree", "example", "example"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    data = draw(trees) if kind == "tree" else mutated_example(draw)
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(content=files())
def test_any_file_is_a_config_or_a_clean_problem_list(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(content)
    path.chmod(0o600)
    outcome: Config | ConfigError
    try:
        outcome = load_config(path, env={**ENV, "EGAUGE_MAIN_PASSWORD": "a",
                                         "EGAUGE_GARAGE_PASSWORD": "b"})
    except ConfigError as exc:  # anything else escaping fails the test
        outcome = exc
    if isinstance(outcome, ConfigError):
        assert outcome.problems  # at least one, one line each
        assert all(isinstance(p, str) and p and "\n" not in p for p in outcome.problems)
    else:
        assert isinstance(outcome, Config)
