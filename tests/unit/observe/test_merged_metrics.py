"""The supervisor's /metrics: the expositions of its workers, each series labelled with its
worker, merged by family, with the supervisor's own families."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import HttpConfig
from gateway.observe import SupervisorEndpoint, WorkerStatus, exposition, merged_exposition
from gateway.support import Fetched, Request
from tests.support.prometheus import registry
from tests.support.waiting import LoopTurns

WORKER = """# HELP egauge_meter_polls_total Successful polls.
# TYPE egauge_meter_polls_total counter
egauge_meter_polls_total{meter="%s"} %d.0
# HELP egauge_meter_poll_duration_seconds Duration of successful polls.
# TYPE egauge_meter_poll_duration_seconds histogram
egauge_meter_poll_duration_seconds_bucket{le="0.1",meter="%s"} 1.0
egauge_meter_poll_duration_seconds_bucket{le="+Inf",meter="%s"} 2.0
egauge_meter_poll_duration_seconds_count{meter="%s"} 2.0
egauge_meter_poll_duration_seconds_sum{meter="%s"} 0.3
"""


def samples(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_each_workers_series_carry_its_worker_and_families_merge() -> None:
    own = GaugeMetricFamily("egauge_worker_up", "1 while the worker runs.", labels=["worker"])
    own.add_metric(["0"], 1)
    own.add_metric(["1"], 0)
    text = merged_exposition([("0", (WORKER % (("a", 3) + ("a",) * 4)).encode()),
                              ("1", (WORKER % (("b", 5) + ("b",) * 4)).encode())], [own])
    got = samples(text)
    assert sorted(got["egauge_meter_polls_total"], key=lambda s: s[0]["worker"]) == [
        ({"meter": "a", "worker": "0"}, 3.0), ({"meter": "b", "worker": "1"}, 5.0)]
    assert len(got["egauge_meter_poll_duration_seconds_bucket"]) == 4
    assert {s[0]["worker"] for s in got["egauge_meter_poll_duration_seconds_count"]} == {"0", "1"}
    assert got["egauge_worker_up"] == [({"worker": "0"}, 1.0), ({"worker": "1"}, 0.0)]
    assert text.count(b"# TYPE egauge_meter_polls_total counter") == 1


def test_a_worker_answering_no_prometheus_text_is_left_out() -> None:
    text = merged_exposition([("0", b"\xff\xfe not text"), ("1", (WORKER % (("b", 1) + ("b",) * 4)
                                                                    ).encode())])
    assert [s[0]["worker"] for s in samples(text)["egauge_meter_polls_total"]] == ["1"]


class Workers:
    """Just what the supervisor's /metrics reads of its view: two running workers."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(gateway=SimpleNamespace(id="gw"))
        self.mqtt = None
        self.relay = None

    def workers(self) -> list[WorkerStatus]:
        return [WorkerStatus(i, "running", (), pid=1, http_port=9000 + i, ready=True)
                for i in (0, 1)]


async def test_the_supervisor_merges_in_a_thread_and_its_loop_goes_on_meanwhile() -> None:
    big = "".join(WORKER % ((f"m{i}", i) + (f"m{i}",) * 4) for i in range(3000))

    async def fetch(port: int, path: str) -> Fetched:
        return Fetched(200, (), big.replace('meter="', f'meter="{port}-').encode())

    endpoint = SupervisorEndpoint(HttpConfig(host="127.0.0.1", port=1), Workers(),  # type: ignore[arg-type]
                                  fetcher=fetch)
    turns = await LoopTurns().start()
    answer = await endpoint.handle(Request("GET", "/metrics", (), {}, b""))  # type: ignore[misc]
    during = turns.stop()
    got = samples(answer.body)
    assert len(got["egauge_meter_polls_total"]) == 2 * 3000
    assert {s[0]["worker"] for s in got["egauge_meter_polls_total"]} == {"0", "1"}
    assert got["egauge_worker_up"] == [({"worker": "0"}, 1.0), ({"worker": "1"}, 1.0)]
    assert during > 10  # the loop turned while the text was merged


def worker_exposition(meter: str) -> bytes:
    """What a worker's /metrics holds: the gateway's own writer over counters, a histogram,
    gauges with and without labels, label values that need escaping."""
    polls = CounterMetricFamily("egauge_meter_polls", "Successful polls.", labels=["meter"])
    polls.add_metric([meter], 7)
    polls.add_metric(['odd "' + meter + '" \\ } {x}\nline'], 1)
    latency = HistogramMetricFamily("egauge_meter_poll_duration_seconds", "Duration.",
                                    labels=["meter"])
    latency.add_metric([meter], [("0.1", 1), ("+Inf", 2)], 0.25)
    queued = GaugeMetricFamily("egauge_mqtt_queued", "Messages waiting.", value=3)
    outcomes = CounterMetricFamily("egauge_commands", "Outcomes.",
                                   labels=["meter", "action", "outcome"])
    outcomes.add_metric([meter, "reboot", "ok"], 2)
    return exposition(registry(polls, latency, queued, outcomes))


def test_the_merge_labels_every_sample_as_the_library_would_and_parses() -> None:
    parts = [("0", worker_exposition("a")), ("1", worker_exposition("b"))]
    own = GaugeMetricFamily("egauge_worker_up", "1 while the worker runs.", labels=["worker"])
    own.add_metric(["0"], 1)
    expected: dict[str, list[tuple[dict[str, str], float]]] = {
        "egauge_worker_up": [({"worker": "0"}, 1.0)]}
    for worker, text in parts:  # the library's own reading of each part, labelled by hand
        for family in text_string_to_metric_families(text.decode()):
            for s in family.samples:
                expected.setdefault(s.name, []).append(({**s.labels, "worker": worker},
                                                        s.value))
    merged = merged_exposition(parts, [own])
    assert samples(merged) == expected
    assert merged.count(b"# TYPE egauge_meter_poll_duration_seconds histogram") == 1
    assert merged.count(b"# HELP egauge_mqtt_queued ") == 1


def test_a_worker_answering_other_text_is_left_out_whole() -> None:
    good = ("1", worker_exposition("b"))
    for bad in (b"# HELP x y\n# TYPE x gauge\nnot a sample\n",  # not a sample line
                b"x 1.0\n",  # a sample outside any family
                b"# HELP x y\n# TYPE z gauge\nz 1.0\n"):  # a TYPE of another family
        got = samples(merged_exposition([("0", bad + worker_exposition("a")), good]))
        assert {s[0]["worker"] for s in got["egauge_meter_polls_total"]} == {"1"}
        assert "x" not in got
