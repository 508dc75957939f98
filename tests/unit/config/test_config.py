"""gateway.yaml checks: each bad input gives exactly the documented problem lines."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import Config, MqttTls, load_config
from gateway.errors import ConfigError
from gateway.secret import Secret
from tests.support.config import ENV, METER, meter, problems, write

CASES = [
    pytest.param(f"meters: [{meter(poll_interval_s='fast')}]",
                 ["meters[0].poll_interval_s: must be a number > 0 (got 'fast')"], id="poll-type"),
    pytest.param(f"meters: [{meter(poll_interval_s='0')}]",
                 ["meters[0].poll_interval_s: must be a number > 0 (got 0)"], id="poll-zero"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{prot: 1883}}",
                 ["mqtt.prot: unknown key (did you mean 'port'?)"], id="did-you-mean"),
    pytest.param(f"meters: [{meter(zzz='x')}]",
                 ["meters[0].zzz: unknown key"], id="unknown-key-no-hint"),
    pytest.param(f"meters: [{METER}]\nhttp: {{enabled: true, colour: red}}",
                 ["http.colour: unknown key"], id="unknown-key-http"),
    pytest.param(f"mqtt: {{}}\nmeterz: [{METER}]",
                 ["meterz: unknown key (did you mean 'meters'?)", "meters: required key missing"],
                 id="top-level-typo"),
    pytest.param(f"meters: [{meter(id='Main Meter')}]",
                 ["meters[0].id: must match [a-z0-9][a-z0-9_-]* (got 'Main Meter')"],
                 id="id-pattern"),
    pytest.param(f"meters: [{meter(id='main')}, {meter(id='b', modbus_unit_id='2')}, "
                 f"{meter(id='main', modbus_unit_id='3')}]",
                 ["meters[2].id: duplicate meter id 'main' (also meters[0])"], id="duplicate-id"),
    pytest.param(f"meters: [{meter(id='a')}, {meter(id='b')}]",
                 ["meters[1].modbus_unit_id: duplicate unit id 1 (also meters[0])"],
                 id="duplicate-unit-id-default"),
    pytest.param(f"meters: [{meter(id='a')}, {meter(id='b')}]\nmodbus: {{enabled: false}}",
                 [], id="unit-ids-free-without-modbus"),
    pytest.param(f"meters: [{meter(modbus_unit_id='0')}]",
                 ["meters[0].modbus_unit_id: must be an integer 1-247 (got 0)"], id="unit-id-low"),
    pytest.param(f"meters: [{meter(modbus_unit_id='248')}]",
                 ["meters[0].modbus_unit_id: must be an integer 1-247 (got 248)"],
                 id="unit-id-high"),
    pytest.param(f"meters: [{meter(modbus_unit_id='true')}]",
                 ["meters[0].modbus_unit_id: must be an integer 1-247 (got true)"],
                 id="unit-id-bool"),
    pytest.param(f"meters: [{meter(url='DROP', username='DROP')}]",
                 ["meters[0].url: required key missing",
                  "meters[0].username: required key missing"],
                 id="missing-required"),
    pytest.param(f"meters: [{meter(password='DROP')}]",
                 ["meters[0].password: required key missing (or password_file / "
                  "password_credential)"], id="missing-password"),
    pytest.param("gateway: {id: a}", ["meters: required key missing"], id="no-meters"),
    pytest.param("meters: []", ["meters: must be a non-empty list of meters (got [])"],
                 id="empty-meters"),
    pytest.param("meters: [main]", ["meters[0]: must be a mapping (got 'main')"],
                 id="meter-not-mapping"),
    pytest.param("- a\n- b", ["(top level): must be a mapping with gateway, meters, mqtt, modbus "
                              "and http sections (got ['a', 'b'])"], id="top-level-list"),
    pytest.param(f"meters: [{METER}]\ngateway: [1]", ["gateway: must be a mapping (got [1])"],
                 id="section-type"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{port: 70000}}",
                 ["mqtt.port: must be a port 1-65535 (got 70000)"], id="port-range"),
    pytest.param(f"meters: [{METER}]\nmodbus: {{port: '502'}}",
                 ["modbus.port: must be a port 1-65535 (got '502')"], id="port-string"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{qos: 3}}",
                 ["mqtt.qos: must be 0, 1 or 2 (got 3)"], id="qos"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{protocol: 4}}",
                 ["mqtt.protocol: must be auto, 3.1.1 or 5 (got 4)"], id="protocol"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{enabled: 1}}",
                 ["mqtt.enabled: must be true or false (got 1)"], id="bool"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{base_topic: 'egauge/+/x'}}",
                 ["mqtt.base_topic: must be an MQTT topic without +, #, empty levels or a leading "
                  "$ or / (got 'egauge/+/x')"], id="topic-wildcard"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{homeassistant: {{prefix: 'ha//x'}}}}",
                 ["mqtt.homeassistant.prefix: must be an MQTT topic without +, #, empty levels or "
                  "a leading $ or / (got 'ha//x')"], id="topic-empty-level"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{password: '${{PW}}'}}",
                 ["mqtt.username: required key missing when a password is given"],
                 id="mqtt-password-without-user"),
    pytest.param(f"meters: [{METER}]\nmqtt: {{tls: 'yes please'}}",
                 ["mqtt.tls: must be null, true or a mapping (ca_file, cert_file, key_file, "
                  "insecure) (got 'yes please')"], id="tls-type"),
    pytest.param(f"meters: [{METER}]\ngateway: {{log_level: verbose, log_format: xml}}",
                 ["gateway.log_level: must be debug, info, warning or error (got 'verbose')",
                  "gateway.log_format: must be auto, console or json (got 'xml')"], id="log-enums"),
    pytest.param(f"meters: [{meter(username='5')}]",
                 ["meters[0].username: must be a non-empty string (got 5)"], id="string-type"),
    pytest.param(f"meters: [{meter(url=repr('ftp://meter.local'))}]",
                 ["meters[0].url: must be http://HOST[:PORT] or https://HOST[:PORT] without a path "
                  "(got 'ftp://meter.local')"], id="url-scheme"),
    pytest.param(f"meters: [{meter(url=repr('https://meter.local/api'))}]",
                 ["meters[0].url: must be http://HOST[:PORT] or https://HOST[:PORT] without a path "
                  "(got 'https://meter.local/api')"], id="url-path"),
    pytest.param(f"meters: [{meter(url=repr('https://:8443'))}]",
                 ["meters[0].url: must be http://HOST[:PORT] or https://HOST[:PORT] without a path "
                  "(got 'https://:8443')"], id="url-no-host"),
    pytest.param(f"meters: [{meter(url=repr('http://meter.local:99999'))}]",
                 ["meters[0].url: must be http://HOST[:PORT] or https://HOST[:PORT] without a path "
                  "(got 'http://meter.local:99999')"], id="url-port"),
    pytest.param(f"meters: [{meter(url=repr('http://owner:hunter2@meter.local'))}]",
                 ["meters[0].url: must not contain credentials (use username and password) "
                  "(got '***')"], id="url-credentials-masked"),
    pytest.param(f"meters: [{meter(poll_interval_s='1', timeout_s='3')}]",
                 ["meters[0].timeout_s: must be below poll_interval_s (1) (got 3)"],
                 id="timeout-vs-poll"),
    pytest.param(f"meters: [{meter(poll_interval_s='2', timeout_s='2')}]",
                 ["meters[0].timeout_s: must be below poll_interval_s (2) (got 2)"],
                 id="timeout-equal-poll"),
    pytest.param(f"meters: [{meter(verify_tls='maybe')}]",
                 ["meters[0].verify_tls: must be true, false or the path of an existing CA bundle "
                  "file (got 'maybe')"], id="verify-tls"),
    pytest.param(f"meters: [{meter(registers='some')}]",
                 ["meters[0].registers: must be 'all' or a non-empty list of register names "
                  "(got 'some')"], id="registers-type"),
    pytest.param(f"meters: [{meter(registers='[Grid, 7, Grid]')}]",
                 ["meters[0].registers[1]: must be a non-empty string (quote names that look like "
                  "numbers) (got 7)",
                  "meters[0].registers[2]: duplicate register 'Grid' (also registers[0])"],
                 id="registers-items"),
    pytest.param(f"meters: [{meter(modbus_mapping='nowhere.yaml')}]",
                 ["meters[0].modbus_mapping: must be default, sunspec or the path of an existing "
                  "mapping file (got 'nowhere.yaml')"], id="mapping"),
    pytest.param(f"meters: [{meter(password='1234')}]",
                 ["meters[0].password: must be a non-empty string (quote it in YAML) (got '***')"],
                 id="password-type-masked"),
    pytest.param(f"meters: [{meter(password_file='pw.txt')}]",
                 ["meters[0].password_file: give only one of password, password_file, "
                  "password_credential"], id="two-password-sources"),
    pytest.param(f"meters: [{METER}]\nmodbus: {{port: 9120}}",
                 ["http.port: same port as modbus.port (9120) (got 9120)"], id="port-clash"),
    pytest.param(f"meters: [{METER}]\nmodbus: {{port: 9120}}\nhttp: {{host: 127.0.0.2}}",
                 ["http.port: same port as modbus.port (9120) (got 9120)"],
                 id="port-clash-any-host"),
    pytest.param(f"meters: [{METER}]\nmodbus: {{port: 9120, host: 127.0.0.3}}\n"
                 "http: {host: 127.0.0.2}", [], id="same-port-other-hosts"),
    pytest.param(f"meters: [{meter(commands='{allow: [reboot, rebot, 5]}')}]",
                 ["meters[0].commands.allow[1]: unknown command entry (did you mean 'reboot'?) "
                  "(got 'rebot')",
                  "meters[0].commands.allow[2]: must be a string (got 5)"], id="allow-entries"),
    pytest.param(f"meters: [{meter(commands='{allow: reboot}')}]",
                 ["meters[0].commands.allow: must be a list of command entries (got 'reboot')"],
                 id="allow-not-list"),
    pytest.param(f"meters: [{meter(commands='{allow: [], reboot_cooldown_s: -1}')}]",
                 ["meters[0].commands.reboot_cooldown_s: must be a number >= 0 (got -1)"],
                 id="cooldown"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_problem_lines(tmp_path: Path, text: str, expected: list[str]) -> None:
    if expected:
        assert problems(tmp_path, text) == expected
    else:
        assert isinstance(load_config(write(tmp_path, text), env=ENV), Config)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
        gateway: {log_level: loud}
        meters:
          - {id: main, url: 'http://a.local', username: owner, password: '${PW}',
             poll_interval_s: fast}
          - {id: Garage, url: 'gopher://b', username: owner, password: '${NOPE}'}
          - {id: main, url: 'http://c.local', username: owner, password: '${PW}',
             modbus_unit_id: 1}
        mqtt: {prot: 1883, qos: 5}
        """
    assert problems(tmp_path, text) == [
        "gateway.log_level: must be debug, info, warning or error (got 'loud')",
        "meters[0].poll_interval_s: must be a number > 0 (got 'fast')",
        "meters[1].id: must match [a-z0-9][a-z0-9_-]* (got 'Garage')",
        "meters[1].url: must be http://HOST[:PORT] or https://HOST[:PORT] without a path "
        "(got 'gopher://b')",
        "meters[1].password: environment variable NOPE is not set",
        "meters[2].id: duplicate meter id 'main' (also meters[0])",
        "mqtt.prot: unknown key (did you mean 'port'?)",
        "mqtt.qos: must be 0, 1 or 2 (got 5)",
        "meters[1].modbus_unit_id: duplicate unit id 1 (also meters[0])",
        "meters[2].modbus_unit_id: duplicate unit id 1 (also meters[0])",
    ]


def test_error_text_names_the_file_and_never_the_password(tmp_path: Path) -> None:
    text = f"meters: [{meter(url=repr('http://owner:hunter2@m.local'), password='hunter2')}]"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(info.value.problems)


def test_loaded_config_is_typed_and_frozen(tmp_path: Path) -> None:
    text = f"""\
        meters:
          - {meter(poll_interval_s='2.5', registers='[Grid, Solar]', local='true')}
          - {meter(id='b', url="'https://b.local:8443/'", modbus_unit_id='7', verify_tls='false',
                   commands="{allow: [reboot, 'config:/net/hostname']}")}
        mqtt: {{tls: true, protocol: 5, username: bridge, password: '${{PW}}'}}
        """
    config = load_config(write(tmp_path, text), env=ENV)
    a, b = config.meters
    assert (a.id, a.url, a.api_url) == ("main", "http://meter.local", "http://meter.local/api")
    assert a.password == Secret("s3cret-pw")
    assert (a.poll_interval_s, a.registers, a.local) == (2.5, ("Grid", "Solar"), True)
    assert (b.url, b.modbus_unit_id, b.verify_tls) == ("https://b.local:8443", 7, False)
    assert b.commands.allow == ("reboot", "config:/net/hostname")
    assert config.mqtt.tls == MqttTls()
    assert config.mqtt.port == 8883  # the TLS default port
    assert (config.mqtt.protocol, config.mqtt.username) == ("5", "bridge")
    assert config.mqtt.password == Secret("s3cret-pw")
    assert config.source == str(tmp_path / "gateway.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mqtt.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.poll_interval_s = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.meters = ()  # type: ignore[misc]
    assert isinstance(config.meters, tuple)


@pytest.mark.parametrize(("poll", "timeout"), [("1", 0.9), ("0.5", 0.45), ("10", 3.0)])
def test_default_timeout_is_below_the_poll_interval(tmp_path: Path, poll: str,
                                                    timeout: float) -> None:
    # documented default: the smaller of 3 s and 0.9 x poll_interval_s
    config = load_config(write(tmp_path, f"meters: [{meter(poll_interval_s=poll)}]"), env=ENV)
    assert config.meters[0].timeout_s == pytest.approx(timeout)
    assert config.meters[0].timeout_s < config.meters[0].poll_interval_s


def test_file_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "plc.yaml").write_text("registers: []\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    text = f"""\
        meters:
          - {meter(verify_tls='ca.pem', modbus_mapping='maps/plc.yaml')}
          - {meter(id='b', modbus_unit_id='2')}
        modbus: {{mapping: sunspec}}
        mqtt: {{tls: {{ca_file: ca.pem, insecure: true}}}}
        """
    config = load_config(write(tmp_path, text), env=ENV)
    a, b = config.meters
    assert a.verify_tls == str(tmp_path / "ca.pem")
    assert a.modbus_mapping == str(tmp_path / "maps" / "plc.yaml")
    assert b.modbus_mapping == "sunspec"  # a meter naming none takes modbus.mapping
    assert config.mqtt.tls == MqttTls(ca_file=str(tmp_path / "ca.pem"), insecure=True)


def test_tls_files_must_exist(tmp_path: Path) -> None:
    text = f"meters: [{METER}]\nmqtt: {{tls: {{ca_file: nope.pem, key_file: k.pem}}}}"
    assert problems(tmp_path, text) == [
        "mqtt.tls.ca_file: no such file (got 'nope.pem')",
        "mqtt.tls.key_file: no such file (got 'k.pem')",
        "mqtt.tls.cert_file: required key missing when key_file is given",
    ]


def test_empty_file_needs_meters(tmp_path: Path) -> None:
    assert problems(tmp_path, "") == ["meters: required key missing"]


def test_homeassistant_section(tmp_path: Path) -> None:
    text = f"meters: [{METER}]\nmqtt: {{homeassistant: {{enabled: false, expire_after_s: 90}}}}"
    ha = load_config(write(tmp_path, text), env=ENV).mqtt.homeassistant
    assert (ha.enabled, ha.prefix, ha.expire_after_s) == (False, "homeassistant", 90)
    bad = f"meters: [{METER}]\nmqtt: {{homeassistant: {{expire_after_s: '${{NOPE}}'}}}}"
    assert problems(tmp_path, bad) == [
        "mqtt.homeassistant.expire_after_s: environment variable NOPE is not set"]
    zero = f"meters: [{METER}]\nmqtt: {{homeassistant: {{expire_after_s: 0}}}}"
    assert problems(tmp_path, zero) == [
        "mqtt.homeassistant.expire_after_s: must be an integer >= 1 or null (got 0)"]
