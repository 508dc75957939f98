"""Capture and alert replies as the WebAPI notes describe them (egauge-webapi §8), typed by
gateway.meter; the replies are written here by hand from the notes' shapes."""

from __future__ import annotations

import pytest

from gateway.errors import MeterProtocolError
from gateway.meter import (
    CaptureChannel,
    parse_alerts,
    parse_channels,
    parse_cookie,
    parse_progress,
    parse_waveform,
)

CHANNELS = {0: CaptureChannel(0, "L1", "V"), 4: CaptureChannel(4, "S1", "A")}


def test_channels_are_sorted_by_number() -> None:
    reply = {"channels": {"4": {"name": "S1", "unit": "A"}, "0": {"name": "L1", "unit": "V"}}}
    assert parse_channels("m", reply) == (CHANNELS[0], CHANNELS[4])


def test_values_cycle_through_the_mask_in_ascending_order_and_ticks_add_up() -> None:
    reply = {"state": "full", "ts_freq": 1000, "first_sample": "1619637288.061",
             "ch_mask": [17, 0],  # channels 0 and 4
             "r": [{"t": 4955, "d": [135.06]}, {"t": 2, "d": [-0.5]},
                   {"t": 3, "d": [120.0, 1.5]}, {"t": 1, "d": [100.0], "trigger": True}]}
    w = parse_waveform("m", reply, CHANNELS)
    assert w.first_sample == pytest.approx(1619637288.061)
    l1, s1 = w.traces
    assert (l1.channel, s1.channel) == (CHANNELS[0], CHANNELS[4])
    # the first entry's t is not counted: times are seconds after the first sample
    assert l1.times == (0.0, 0.005, 0.006)
    assert l1.values == (135.06, 120.0, 100.0)
    assert s1.times == (0.002, 0.005)
    assert s1.values == (-0.5, 1.5)
    assert w.trigger == (0, 0.006)


def test_a_channel_the_info_did_not_name_keeps_its_number() -> None:
    reply = {"ts_freq": 1, "first_sample": "0", "ch_mask": [0, 1], "r": [{"t": 0, "d": [1]}]}
    (trace,) = parse_waveform("m", reply, CHANNELS).traces
    assert trace.channel == CaptureChannel(32, "#32", "")


@pytest.mark.parametrize(("reply", "field"), [
    ({"ts_freq": 0, "first_sample": "0", "ch_mask": [1, 0], "r": []}, "ts_freq"),
    ({"ts_freq": 1, "first_sample": "x", "ch_mask": [1, 0], "r": []}, "first_sample"),
    ({"ts_freq": 1, "first_sample": "0", "ch_mask": [0, 0], "r": []}, "ch_mask"),
    ({"ts_freq": 1, "first_sample": "0", "ch_mask": [1], "r": [{"t": 0, "d": ["v"]}]},
     "r[0].d[0]"),
])
def test_a_malformed_capture_names_the_field(reply: dict[str, object], field: str) -> None:
    with pytest.raises(MeterProtocolError) as caught:
        parse_waveform("m", reply, CHANNELS)
    assert caught.value.field == field


def test_progress_and_cookie() -> None:
    assert parse_progress("m", {"state": "capturing", "count": 235, "max_count": 600}).count == 235
    assert parse_cookie("m", {"state": "armed", "cookie": 1875353535}) == 1875353535
    with pytest.raises(MeterProtocolError):
        parse_progress("m", {"state": "sleeping"})


def test_alerts_sort_by_id_and_parse_timestamps() -> None:
    reply = {"drops": 2, "log": [
        {"id": 9, "acked": True, "prio": 7, "count": 3, "first": "1700000000.5",
         "last": "1700000100.25", "name": "Grid outage", "detail": "L1", "reported": False},
        {"id": 4, "acked": False, "prio": 0, "count": 1, "first": "1690000000",
         "last": "1690000000", "name": "Info", "detail": ""}]}
    alerts, drops = parse_alerts("m", reply)
    assert drops == 2
    assert [(a.id, a.prio, a.count, a.acked) for a in alerts] == [(4, 0, 1, False),
                                                                  (9, 7, 3, True)]
    assert alerts[1].first == 1700000000.5
    assert alerts[1].last == 1700000100.25
