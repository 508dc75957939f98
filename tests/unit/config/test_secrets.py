"""${ENV} expansion, password sources and the world-readable refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import MeterConfig, load_config, parse_config
from gateway.errors import ConfigError
from gateway.secret import Secret
from tests.support.config import meter, problems, write


def only_meter(tmp_path: Path, env: dict[str, str], **keys: str) -> MeterConfig:
    return load_config(write(tmp_path, f"meters: [{meter(**keys)}]"), env=env).meters[0]


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("'${HOST}'", {"HOST": "meter.lan"}, "meter.lan"),
        ("'u-${HOST}-v'", {"HOST": "x"}, "u-x-v"),
        ("'${HOST:-fallback}'", {}, "fallback"),
        ("'${HOST:-fallback}'", {"HOST": ""}, "fallback"),  # empty counts as unset for :-
        ("'${HOST:-fallback}'", {"HOST": "set"}, "set"),
        ("'${A}${B}'", {"A": "ab", "B": "cd"}, "abcd"),
        ("'$${HOST}'", {"HOST": "x"}, "${HOST}"),  # $${ is a literal ${
        ("'plain'", {}, "plain"),
    ],
)
def test_env_expansion(tmp_path: Path, value: str, env: dict[str, str], expected: str) -> None:
    m = only_meter(tmp_path, {"PW": "pw", **env}, username=value)
    assert m.username == expected


def test_expanded_values_convert_to_numbers_and_booleans(tmp_path: Path) -> None:
    env = {"PW": "pw", "PORT": "1884", "QOS": "2", "RETAIN": "false", "POLL": "2.5"}
    text = f"""\
        meters: [{meter(poll_interval_s="'${POLL}'")}]
        mqtt: {{port: '${{PORT}}', qos: '${{QOS}}', retain: '${{RETAIN}}',
               keepalive_s: '${{KA:-45}}'}}
        """
    config = load_config(write(tmp_path, text), env=env)
    assert (config.mqtt.port, config.mqtt.qos, config.mqtt.retain) == (1884, 2, False)
    assert config.mqtt.keepalive_s == 45
    assert config.meters[0].poll_interval_s == 2.5


def test_a_literal_string_is_not_a_number(tmp_path: Path) -> None:
    # only values that come from a variable convert: a quoted literal stays a string
    assert problems(tmp_path, f"meters: [{meter()}]\nmqtt: {{port: '1884'}}") == [
        "mqtt.port: must be a port 1-65535 (got '1884')"]


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("'${MISSING}'", {}, "meters[0].username: environment variable MISSING is not set"),
        ("'x${MISSING}y'", {}, "meters[0].username: environment variable MISSING is not set"),
        ("'${1BAD}'", {}, "meters[0].username: bad environment reference ${1BAD}"),
        ("'${OPEN'", {}, "meters[0].username: unclosed ${ reference"),
        ("'${PORT}'", {"PORT": "x"}, None),
    ],
)
def test_env_problems(tmp_path: Path, value: str, env: dict[str, str],
                      expected: str | None) -> None:
    if expected is None:  # a variable whose value is valid text for the key
        assert only_meter(tmp_path, {"PW": "pw", **env}, username=value).username == "x"
    else:
        assert problems(tmp_path, f"meters: [{meter(username=value)}]",
                        env={"PW": "pw", **env}) == [expected]


def test_expanded_value_still_checked(tmp_path: Path) -> None:
    text = f"meters: [{meter()}]\nmqtt: {{port: '${{PORT}}'}}"
    assert problems(tmp_path, text, env={"PW": "pw", "PORT": "http"}) == [
        "mqtt.port: must be a port 1-65535 (got 'http')"]


def test_env_in_list_items(tmp_path: Path) -> None:
    m = only_meter(tmp_path, {"PW": "pw", "R": "Solar+"}, registers="['${R}', Grid]")
    assert m.registers == ("Solar+", "Grid")


def test_password_file_relative_to_config_and_one_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "main.txt").write_text("pa ss\n\n", encoding="utf-8")
    (tmp_path / "crlf.txt").write_bytes(b"crlf-pw\r\n")
    text = f"""\
        meters:
          - {meter(password='DROP', password_file='secrets/main.txt')}
          - {meter(id='b', password='DROP', password_file='crlf.txt', modbus_unit_id='2')}
        mqtt: {{username: bridge, password_file: {tmp_path / 'crlf.txt'}}}
        """
    # the process runs elsewhere: relative names follow the config file, not the cwd
    config = load_config(write(tmp_path, text), env={})
    assert config.meters[0].password == Secret("pa ss\n")
    assert config.meters[1].password == Secret("crlf-pw")
    assert config.mqtt.password == Secret("crlf-pw")


def test_password_file_problems(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n")
    text = f"""\
        meters:
          - {meter(password='DROP', password_file='missing.txt')}
          - {meter(id='b', password='DROP', password_file='empty.txt', modbus_unit_id='2')}
        """
    assert problems(tmp_path, text) == [
        f"meters[0].password_file: cannot read {tmp_path / 'missing.txt'}: No such file or "
        "directory (got 'missing.txt')",
        f"meters[1].password_file: {tmp_path / 'empty.txt'} is empty (got 'empty.txt')",
    ]


def test_password_credential_reads_the_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "egauge-main").write_text("from-systemd\n")
    m = only_meter(tmp_path, {"CREDENTIALS_DIRECTORY": str(creds)}, password="DROP",
                   password_credential="egauge-main")
    assert m.password == Secret("from-systemd")


def test_password_credential_problems(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    text = f"meters: [{meter(password='DROP', password_credential='egauge-main')}]"
    assert problems(tmp_path, text, env={}) == [
        "meters[0].password_credential: $CREDENTIALS_DIRECTORY is not set (systemd "
        "LoadCredential=) (got 'egauge-main')"]
    assert problems(tmp_path, text, env={"CREDENTIALS_DIRECTORY": str(creds)}) == [
        f"meters[0].password_credential: cannot read {creds}/egauge-main: No such file or "
        "directory (got 'egauge-main')"]
    name = "'../etc/passwd'"
    bad = f"meters: [{meter(password='DROP', password_credential=name)}]"
    assert problems(tmp_path, bad, env={"CREDENTIALS_DIRECTORY": str(creds)}) == [
        "meters[0].password_credential: must match [A-Za-z0-9_][A-Za-z0-9_.@-]* "
        "(got '../etc/passwd')"]


WORLD = ("plain-text password in a world-readable file (mode 0644); use ${ENV}, password_file "
         "or password_credential, or chmod o-r the file")


def test_world_readable_file_with_plain_password_is_refused(tmp_path: Path) -> None:
    text = f"""\
        meters: [{meter(password='hunter2')}]
        mqtt: {{username: u, password: alsosecret}}
        """
    path = write(tmp_path, text)
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == (f"meters[0].password: {WORLD}", f"mqtt.password: {WORLD}")
    assert "hunter2" not in str(info.value)
    path.chmod(0o640)  # not readable by others: accepted
    assert load_config(path, env={}).meters[0].password == Secret("hunter2")


def test_world_readable_file_with_env_password_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, f"meters: [{meter()}]")
    path.chmod(0o644)
    assert load_config(path, env={"PW": "x"}).meters[0].password == Secret("x")


def test_world_readable_check_needs_a_real_file(tmp_path: Path) -> None:
    data = {"meters": [{"id": "a", "url": "http://a", "username": "u", "password": "lit"}]}
    config = parse_config(data, source="<memory>", env={}, base_dir=tmp_path)
    assert config.meters[0].password == Secret("lit")


def test_bad_password_never_echoed(tmp_path: Path) -> None:
    text = f"meters: [{meter(password='[hunter2]')}]"
    lines = problems(tmp_path, text)
    assert lines == ["meters[0].password: must be a non-empty string (quote it in YAML) "
                     "(got '***')"]


def test_escaped_reference_is_still_a_plain_text_password(tmp_path: Path) -> None:
    # "$${" writes a literal "${": no variable is involved, so the password is in the file
    path = write(tmp_path, f"meters: [{meter(password=repr('$${x}'))}]")
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == (f"meters[0].password: {WORLD}",)
