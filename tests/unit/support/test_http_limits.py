"""The HTTP server's limits, its log throttle and the request it hands to handlers."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.support import HttpLimits
from gateway.support.http_message import request_from, split_query


@pytest.mark.parametrize("changes", [
    {"max_header_bytes": 0}, {"max_body_bytes": -1}, {"idle_timeout_s": 0.0},
    {"max_connections": True}, {"header_timeout_s": 5.0, "request_timeout_s": 1.0},
])
def test_limits_must_be_positive_and_consistent(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="HttpLimits"):
        HttpLimits(**changes)  # type: ignore[arg-type]


DOCUMENTED = {  # row of the limits table in docs/OPERATIONS.md -> HttpLimits field
    "request line and header fields": "max_header_bytes",
    "request body (declared or chunked)": "max_body_bytes",
    "request head complete": "header_timeout_s",
    "whole request complete": "request_timeout_s",
    "idle connection (no request in progress)": "idle_timeout_s",
    "bytes of pipelined requests waiting": "max_pipelined_bytes",
    "requests answered in a row on one connection": "max_pipelined",
    "answers not yet taken by the client": "write_buffer_bytes",
    "... and nothing taken for": "write_timeout_s",
    "open connections": "max_connections",
}


def documented_value(text: str) -> float:
    number, _, unit = text.partition(" ")
    scale = {"KiB": 1024, "s": 1}.get(unit.split(" ")[0], 1)
    return float(number) * scale


def test_the_defaults_are_the_documented_ones() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "OPERATIONS.md").read_text()
    section = doc[doc.index("### Limits"):doc.index("### Metrics")]
    rows = {cells[0]: cells[1] for line in section.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}
    limits = HttpLimits()
    for label, name in DOCUMENTED.items():
        assert documented_value(rows[label]) == getattr(limits, name), label
    assert "one per event every 10 s" in " ".join(section.split())
    assert limits.log_interval_s == 10


def test_queries_keep_plus_literally() -> None:
    assert split_query("reg=3+5&time=now-60%3A1%3Anow&rate&&x=%2B") == (
        ("reg", "3+5"), ("time", "now-60:1:now"), ("rate", ""), ("x", "+"))


def test_a_request_from_the_parsed_parts() -> None:
    req = request_from(b"get", b"/api/a%20b?reg=3+5", b"1.0",
                       [(b"host", b"x"), (b"x-twice", b"a"), (b"x-twice", b"b")], b"body",
                       tls=True, keep_alive=False)
    assert (req.method, req.path, req.query, req.raw_query) == (
        "GET", "/api/a b", (("reg", "3+5"),), "reg=3+5")
    assert dict(req.headers) == {"host": "x", "x-twice": "a, b"}
    assert (req.version, req.tls, req.keep_alive, req.body) == ("HTTP/1.0", True, False,
                                                                 b"body")
