"""The configured logging pipeline, read back from the stream it writes to."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog

from gateway.errors import ConfigError
from gateway.secret import Secret
from gateway.support import configure_logging, mask_tokens

# a JWT as an eGauge meter issues it: header {"typ":"JWT","alg":"HS256"}, payload {beg, ltm}
JWT = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJiZWciOjE3MDAwMDAwMDAsImx0bSI6NjAwfQ."
       "c2lnbmF0dXJlLXNpZ25hdHVyZQ")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, {n: logging.getLogger(n).level for n in ("httpx", "paho", "pymodbus")})
    try:
        yield out
    finally:
        for h in list(root.handlers):
            if type(h).__module__ == "gateway.support.logs":
                root.removeHandler(h)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)
        structlog.reset_defaults()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_one_object_per_line_with_event_and_keys(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    log = structlog.get_logger("gateway.core.poller")
    log.info("meter_online", meter="main", url="http://meter.local")
    log.warning("meter_offline", meter="main", failures=3)
    log.debug("poll_done", meter="main")  # below the level
    records = lines(stream)
    assert [r["event"] for r in records] == ["meter_online", "meter_offline"]
    first, second = records
    assert first["meter"] == "main"
    assert first["url"] == "http://meter.local"
    assert (first["level"], first["logger"]) == ("info", "gateway.core.poller")
    assert ISO_UTC.fullmatch(str(first["timestamp"]))
    assert (second["level"], second["failures"]) == ("warning", 3)


def test_stdlib_records_share_the_renderer_at_warning(stream: io.StringIO) -> None:
    configure_logging("debug", "json", stream)
    logging.getLogger("httpx").info("HTTP Request: GET http://meter.local/api/register")
    logging.getLogger("pymodbus").warning("client %s gone", "10.0.0.9")
    records = lines(stream)
    assert len(records) == 1
    assert records[0]["event"] == "client 10.0.0.9 gone"
    assert (records[0]["level"], records[0]["logger"]) == ("warning", "pymodbus")


def test_redaction_masks_secret_keys_secrets_and_jwts(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    log = structlog.get_logger("gateway.meter.auth")
    log.info(
        "meter_login",
        meter="main",
        password="hunter2",
        mqtt_passwd="p2",
        pwd="p3",
        client_secret="p4",
        access_token="p5",
        jwt=JWT,
        hash="0123456789abcdef0123456789abcdef",
        Authorization="Bearer opaque-token-value",
        credential=Secret("p6"),
        token_lifetime_s=600,
        note=f"got {JWT} from meter",
        headers={"Authorization": f"Bearer {JWT}", "Accept": "application/json"},
        host="meter-north.building-a.example",
    )
    logging.getLogger("httpx").warning("retry with Authorization: Bearer %s", "opaque-xyz")
    text = stream.getvalue()
    for secret in ("hunter2", "p2", "p3", "p4", "p5", "p6", JWT, "0123456789abcdef",
                   "opaque-token-value", "opaque-xyz"):
        assert secret not in text
    event, foreign = lines(stream)
    for key in ("password", "mqtt_passwd", "pwd", "client_secret", "access_token", "jwt",
                "hash", "Authorization", "credential"):
        assert event[key] == "***", key
    assert event["token_lifetime_s"] == 600  # a number is not a secret
    assert event["note"] == "got *** from meter"
    assert event["headers"] == {"Authorization": "***", "Accept": "application/json"}
    assert event["host"] == "meter-north.building-a.example"  # dotted names are not JWTs
    assert foreign["event"] == "retry with Authorization: Bearer ***"


def test_exceptions_are_rendered_and_redacted(stream: io.StringIO) -> None:
    configure_logging("info", "json", stream)
    try:
        raise RuntimeError(f"refused token {JWT}")
    except RuntimeError:
        structlog.get_logger("gateway.runtime.app").exception("meter_crashed", meter="main")
    (record,) = lines(stream)
    assert record["level"] == "error"
    assert "RuntimeError: refused token ***" in str(record["exception"])
    assert JWT not in stream.getvalue()


def test_console_format_is_readable_and_redacted(stream: io.StringIO) -> None:
    configure_logging("info", "console", stream)
    structlog.get_logger("gateway.runtime.app").info("gateway_started", meters=2,
                                                      password="hunter2")
    (line,) = stream.getvalue().splitlines()
    assert "gateway_started" in line
    assert "meters=2" in line
    assert "password=***" in line
    assert "hunter2" not in line
    assert not line.startswith("{")


def test_auto_is_json_when_not_a_tty(stream: io.StringIO) -> None:
    configure_logging("info", "auto", stream)
    structlog.get_logger("x").info("tick", n=1)
    assert lines(stream)[0]["event"] == "tick"


def test_reconfiguring_replaces_the_handler(stream: io.StringIO) -> None:
    other = io.StringIO()
    configure_logging("info", "json", other)
    configure_logging("info", "json", stream)
    structlog.get_logger("x").info("once")
    assert other.getvalue() == ""
    assert [r["event"] for r in lines(stream)] == ["once"]


def test_bad_level_or_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging("loud", "xml", io.StringIO())
    assert info.value.problems == (
        "log_level: must be debug, info, warning or error (got 'loud')",
        "log_format: must be auto, console or json (got 'xml')",
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (JWT, "***"),
        (f"a {JWT}, b", "a ***, b"),
        ("Bearer abc.def-ghi", "Bearer ***"),
        ("https://egauge12345.egaug.es/api/register", "https://egauge12345.egaug.es/api/register"),
        ("version 1.2.3", "version 1.2.3"),
    ],
)
def test_mask_tokens(text: str, masked: str) -> None:
    assert mask_tokens(text) == masked
