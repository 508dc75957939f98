"""Sparkplug sequence numbers: ``seq`` 0 on NBIRTH and wrapping after 255; ``bdSeq`` 0 the
first time, one more for every new MQTT session (not for failed attempts), kept across
restarts in the state directory, wrapping after 255."""

from __future__ import annotations

import json
from pathlib import Path

from structlog.testing import capture_logs

from gateway.sparkplug.session import BdSeq, Seq


def test_seq_starts_at_0_on_a_birth_and_wraps_after_255() -> None:
    seq = Seq()
    assert seq.last is None
    assert seq.birth() == 0
    values = [seq.next() for _ in range(300)]
    assert values[:3] == [1, 2, 3]
    assert values[254] == 255
    assert values[255] == 0  # after 255 comes 0
    assert values[256] == 1
    assert seq.last == values[-1]


def test_a_rebirth_starts_seq_over() -> None:
    seq = Seq()
    seq.birth()
    for _ in range(41):
        seq.next()
    assert seq.last == 41
    assert seq.birth() == 0
    assert seq.next() == 1


def test_bdseq_is_0_first_and_one_more_for_each_session(tmp_path: Path) -> None:
    path = tmp_path / "sparkplug" / "session.json"
    bdseq = BdSeq(path)
    bdseq.load()
    assert bdseq.for_connect() == 0
    assert json.loads(path.read_text())["bdSeq"] == 0  # written before the CONNECT
    assert bdseq.for_connect() == 0  # that attempt failed: no session, the same value
    bdseq.session_started()
    assert bdseq.current == 0
    assert bdseq.for_connect() == 1  # a new session after one that started
    assert json.loads(path.read_text())["bdSeq"] == 1


def test_bdseq_continues_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    first = BdSeq(path)
    first.load()
    for _ in range(3):
        first.for_connect()
        first.session_started()
    assert first.current == 2
    again = BdSeq(path)  # the process died while session 2 ran
    again.load()
    assert again.current is None
    assert again.for_connect() == 3


def test_bdseq_wraps_after_255(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    path.write_text(json.dumps({"version": 1, "bdSeq": 254}))
    bdseq = BdSeq(path)
    bdseq.load()
    assert bdseq.for_connect() == 255
    bdseq.session_started()
    assert bdseq.for_connect() == 0


def test_a_damaged_bdseq_file_is_logged_and_counting_starts_at_0(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    for text in ("{not json", json.dumps({"bdSeq": 256}), json.dumps({"seq": 3})):
        path.write_text(text)
        bdseq = BdSeq(path)
        with capture_logs() as logs:
            bdseq.load()
        assert [e["event"] for e in logs] == ["sparkplug_bdseq_unreadable"]
        assert bdseq.for_connect() == 0


def test_an_unwritable_state_directory_is_logged_and_the_session_still_gets_a_value(
        tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    bdseq = BdSeq(blocker / "session.json")  # its directory is a file: no write can work
    bdseq.load()
    with capture_logs() as logs:
        assert bdseq.for_connect() == 0
    assert [e["event"] for e in logs] == ["sparkplug_bdseq_not_saved"]
    assert logs[0]["log_level"] == "warning"
