"""The simulator's time grammar and POSIX time zones, checked against the stdlib."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from gateway.simulator.reply import QueryError
from gateway.simulator.timespec import TimeContext, parse_point, parse_time
from gateway.simulator.timezone import PosixTz

NOW = 1_709_247_634  # 2024-02-29 23:00:34 UTC
EPOCH = 1_700_000_000
UTC_CTX = TimeContext(NOW, EPOCH, dt.UTC)


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("spec", "zone"),
    [
        ("EST5EDT,M3.2.0,M11.1.0", "America/New_York"),
        ("CET-1CEST,M3.5.0,M10.5.0/3", "Europe/Berlin"),
        ("AEST-10AEDT,M10.1.0,M4.1.0/3", "Australia/Sydney"),
        ("<+0530>-5:30", "Asia/Kolkata"),
    ],
)
def test_posix_zone_matches_tzdata_through_a_year(spec: str, zone: str) -> None:
    ours, theirs = PosixTz(spec), zoneinfo.ZoneInfo(zone)
    t = utc(2024, 1, 1)
    while t < utc(2025, 1, 1):
        local = dt.datetime.fromtimestamp(t, ours)
        expected = dt.datetime.fromtimestamp(t, theirs)
        assert local.replace(tzinfo=None) == expected.replace(tzinfo=None), t
        assert local.timestamp() == t
        t += 1800


def test_unsupported_zone_string_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported TZ"):
        PosixTz("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("epoch", EPOCH),
        ("1700000123", 1_700_000_123),
        ("now-3600", NOW - 3600),
        ("now-1h-15M", NOW - 3600 - 900),
        ("now-2Q", NOW - 1800),
        ("sod", utc(2024, 2, 29)),
        ("soh", utc(2024, 2, 29, 23)),
        ("soM", utc(2024, 2, 29, 23, 0)),
        ("soQ", utc(2024, 2, 29, 23, 0)),
        ("som", utc(2024, 2, 1)),
        ("soq", utc(2024, 1, 1)),
        ("soy", utc(2024, 1, 1)),
        ("sow", utc(2024, 2, 26)),  # the Monday before
        ("sod+1d-1h", utc(2024, 2, 29, 23)),
        ("sod(1700000000)", utc(2023, 11, 14)),
        ("som-1m", utc(2024, 1, 1)),
        ("1706659200+1m", utc(2024, 2, 29)),  # Jan 31 + 1 month clamps to Feb 29
        ("now-1y", utc(2023, 2, 28, 23, 0, 34)),
    ],
)
def test_time_points(text: str, expected: float) -> None:
    assert parse_point(text, UTC_CTX) == expected


def test_start_of_day_follows_the_meter_zone_across_dst() -> None:
    ny = zoneinfo.ZoneInfo("America/New_York")
    ctx = TimeContext(int(dt.datetime(2024, 3, 10, 12, tzinfo=ny).timestamp()), EPOCH,
                      PosixTz("EST5EDT,M3.2.0,M11.1.0"))
    assert parse_point("sod", ctx) == dt.datetime(2024, 3, 10, tzinfo=ny).timestamp()
    # one calendar day back from noon on the DST day is 23 hours earlier
    assert ctx.now - parse_point("now-1d", ctx) == 23 * 3600


def test_billing_cycle_start_uses_the_start_day() -> None:
    ctx = TimeContext(NOW, EPOCH, dt.UTC, billing_start_day=15)
    assert parse_point("sob", ctx) == utc(2024, 2, 15)
    early = TimeContext(int(utc(2024, 1, 3)), EPOCH, dt.UTC, billing_start_day=15)
    assert parse_point("sob", early) == utc(2023, 12, 15)


def _times(param: str, ctx: TimeContext = UTC_CTX) -> list[list[float]]:
    out = []
    for tr in parse_time(param, ctx):
        ts, k = [], 0
        while (t := tr.at(k, ctx)) is not None:
            ts.append(t)
            k += 1
        out.append(ts)
    return out


def test_ranges_are_generated_from_to_backwards() -> None:
    assert _times("now-10:5:now") == [[NOW, NOW - 5, NOW - 10]]
    assert _times("now-12:5:now") == [[NOW, NOW - 5, NOW - 10]]  # from is not on the grid
    assert _times("now-3:now") == [[NOW, NOW - 1, NOW - 2, NOW - 3]]  # default step 1 s
    assert _times("now-900::now") == [[NOW, NOW - 900]]
    assert _times("now,epoch") == [[NOW], [EPOCH]]
    assert _times("som:1d:sod")[0][-1] == utc(2024, 2, 1)
    assert len(_times("som:1d:sod")[0]) == 29


def test_round_up_prefix() -> None:
    (plain,), (up,) = parse_time("now-5", UTC_CTX), parse_time("+now-5", UTC_CTX)
    assert not plain.round_up
    assert up.round_up
    assert up.end == NOW - 5


@pytest.mark.parametrize(
    "bad", ["", "yesterday", "now-", "now:0:now", "now:now-10", "now:1:2:3", "sod(now", "now*2",
            "now-1:1.5d:now"],
)
def test_bad_time_expressions_are_query_errors(bad: str) -> None:
    with pytest.raises(QueryError):
        parse_time(bad, UTC_CTX)
