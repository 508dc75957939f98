"""The simulator's HTTP/1.1 request parser and response rendering."""

from __future__ import annotations

import pytest

from gateway.simulator.reply import Reply
from gateway.support import HttpError, RequestParser, render


def test_requests_arrive_in_pieces_and_back_to_back() -> None:
    parser = RequestParser()
    wire = (b"GET /api/register?reg=3+5&time=now-60%3A1%3Anow&rate HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /api/auth/login HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
    for i in range(0, len(wire), 5):
        parser.feed(wire[i : i + 5])
        if i < 60:
            assert parser.next_request() is None
    first = parser.next_request()
    assert first is not None
    assert (first.method, first.path) == ("GET", "/api/register")
    assert first.query == (("reg", "3+5"), ("time", "now-60:1:now"), ("rate", ""))
    assert first.keep_alive
    second = parser.next_request()
    assert second is not None
    assert (second.method, second.body) == ("POST", b'{"a":1}')
    assert parser.next_request() is None


def test_chunked_body_and_connection_rules() -> None:
    parser = RequestParser(tls=True)
    parser.feed(b"PUT /api/config/net/hostname HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n4\r\n\"met\r\n5\r\ner-7\"\r\n0\r\n\r\n")
    req = parser.next_request()
    assert req is not None
    assert req.body == b'"meter-7"'
    assert req.tls
    assert not req.keep_alive
    parser.feed(b"GET / HTTP/1.0\r\n\r\n")
    old = parser.next_request()
    assert old is not None
    assert not old.keep_alive


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000, 431),
    ],
)
def test_malformed_requests(wire: bytes, status: int) -> None:
    parser = RequestParser()
    parser.feed(wire)
    with pytest.raises(HttpError) as caught:
        parser.next_request()
    assert caught.value.status == status


def test_render() -> None:
    out = render(Reply(412, b'{"error":"Precondition failed."}', headers=(("ETag", '"x"'),)),
                 keep_alive=True)
    head, body = out.split(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 412 Precondition Failed"
    assert "Content-Length: 32" in lines
    assert "Connection: keep-alive" in lines
    assert 'ETag: "x"' in lines
    assert body == b'{"error":"Precondition failed."}'
