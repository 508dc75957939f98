"""Abuse of the MQTT request topics, against ``python -m gateway run`` with a real Mosquitto
and the simulator over HTTP: non-JSON, 1 MB payloads, deep nesting, wrong types, unknown
actions and meters (hypothesis), 1000 requests in a second.

Every abusive request is an MQTT 5 request with a response topic under ``<base>/clients/``
and its own correlation data, so each answer can be told apart; each must get exactly one,
with a code naming the problem, and nothing may reach the meter. Right after each abusive
request a well-behaved requester asks (``config/get``) and must be answered ``ok``; across
each test the meter's polls stay on schedule (``/metrics``: polls advance, none skipped or
failed; the state topic keeps advancing). Bounded in examples and time; the rows in
docs/RELIABILITY.md ("MQTT request topics") come from these tests."""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.commands import ACTIONS
from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.lifecycle import PASSWORD, GatewayProcess, gateway_process
from tests.support.mqtt import Received, Subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

POLL_S = 0.5
EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CODES = frozenset({"invalid", "unknown_action", "not_allowed", "busy"})
METERED = ("/api/cmd", "/api/ctrl/call", "/api/config")  # what a command would send


@dataclass
class Site:
    """The running gateway, its meter, and the test's MQTT clients."""

    base: str
    gw: GatewayProcess
    meter: SimMeter
    answers: Subscriber  # <base>/clients/#: every answer on a response topic
    states: Subscriber  # <base>/main/state
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def send(self, topic: str, payload: bytes, reply_to: str) -> bytes:
        """Publish an MQTT 5 request; returns its correlation data."""
        correlation = f"c{next(self.seq)}".encode()
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{self.base}/clients/{reply_to}"
        props.CorrelationData = correlation
        self.answers.client.publish(topic, payload, qos=1, properties=props)
        return correlation

    def answer(self, correlation: bytes, timeout: float = 20.0) -> dict[str, Any]:
        found = wait_until(lambda: self.answered(correlation), timeout=timeout,
                           what=f"the answer to {correlation!r}")
        assert isinstance(found, list)
        assert len(found) == 1, found
        body = json.loads(found[0].payload)
        assert isinstance(body, dict)
        return body

    def answered(self, correlation: bytes) -> list[Received]:
        return self.answers.where(lambda m: m.correlation_data == correlation)

    def ask_well(self, busy: bool = False) -> dict[str, Any]:
        """The well-behaved requester: a config/get it is allowed, answered ok (or, with
        ``busy``, busy: the inbox is full)."""
        body = self.answer(self.send(f"{self.base}/main/request/config/get",
                                     b'{"path": "/net/hostname"}', "good"))
        if busy and body["code"] == "busy":
            return body
        assert body["status"] == "ok", body
        assert body["data"]["path"] == "/net/hostname"
        return body

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.gw.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = bytes(reply.read()).decode()
        wanted = {"egauge_meter_polls_total", "egauge_meter_polls_skipped_total",
                  "egauge_meter_poll_errors_total"}
        values = {}
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name in wanted and 'meter="main"' in rest:
                values[name] = float(line.rsplit(" ", 1)[1])
        return values

    def last_state_ts(self) -> float:
        last = self.states.last(f"{self.base}/main/state")
        assert last is not None
        return float(last.json()["ts"])


@pytest.fixture(scope="module")
def site(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = f"abuse{time.monotonic_ns() % 10**9}"
    meter = SimMeter("SIM0888", password=PASSWORD)
    directory = tmp_path_factory.mktemp("abuse")
    with ThreadedSimServer([meter]) as sim:
        def text(modbus_port: int, http_port: int) -> str:
            return f"""
gateway: {{id: abuse, log_level: info, log_format: json, state_dir: "{directory / 'state'}"}}
meters:
  - id: main
    url: {sim.url_for(meter)}
    username: owner
    password: ${{SIM_PASSWORD}}
    poll_interval_s: {POLL_S}
    commands: {{allow: ["config-read:/net"]}}
mqtt: {{host: {broker.host}, port: {broker.port}, base_topic: {base},
       homeassistant: {{enabled: false}}}}
modbus: {{enabled: false}}
http: {{host: 127.0.0.1, port: {http_port}}}
commands: {{rate: 100000}}  # the well-behaved requester asks after every abusive request
"""

        answers = Subscriber(broker.host, broker.port, f"{base}/clients/#", v5=True)
        states = Subscriber(broker.host, broker.port, f"{base}/main/state")
        try:
            with gateway_process(directory, text) as gw:
                states.wait_for(f"{base}/main/state", timeout=20)
                yield Site(base, gw, meter, answers, states)
                assert gw.stop() == 0
        finally:
            answers.close()
            states.close()


@pytest.fixture
def on_schedule(site: Site) -> Iterator[None]:
    """Around a test: the meter's polls go on, none skipped or failed, the state advances,
    and nothing of the abuse reached the meter."""
    site.ask_well()
    before, ts_before = site.metrics(), site.last_state_ts()
    calls_before = len([c for c in site.meter.calls if c.path.startswith(METERED)])
    yield
    site.ask_well()
    wait_until(lambda: site.last_state_ts() > ts_before + POLL_S, timeout=10,
               what="the state topic advancing")
    after = site.metrics()
    assert after["egauge_meter_polls_total"] > before["egauge_meter_polls_total"]
    assert after["egauge_meter_polls_skipped_total"] == before["egauge_meter_polls_skipped_total"]
    assert after["egauge_meter_poll_errors_total"] == before["egauge_meter_poll_errors_total"]
    metered = [c for c in site.meter.calls if c.path.startswith(METERED)]
    assert [c.path for c in metered[calls_before:]] == ["/api/config/net/hostname"] * len(
        metered[calls_before:])  # only the well-behaved requester's reads


def abused(site: Site, topic: str, payload: bytes) -> dict[str, Any]:
    """One abusive request, then the well-behaved requester; the abusive request's answer."""
    correlation = site.send(topic, payload, "abuse")
    site.ask_well()
    body = site.answer(correlation)
    assert body["status"] == "error"
    assert body["code"] in CODES, body
    return body


@pytest.mark.usefixtures("on_schedule")
@EXAMPLES
@given(st.binary(min_size=1, max_size=2048).filter(lambda b: not _is_object(b)))
def test_non_json_payloads_are_invalid(site: Site, payload: bytes) -> None:
    body = abused(site, f"{site.base}/main/request/config/get", payload)
    assert body["code"] == "invalid"


def _is_object(payload: bytes) -> bool:
    try:
        return isinstance(json.loads(payload), dict)
    except ValueError:
        return False


@pytest.mark.usefixtures("on_schedule")
@pytest.mark.parametrize("shape", ["garbage", "json-string", "json-array", "many-members"])
def test_one_megabyte_payloads_are_invalid(site: Site, shape: str) -> None:
    mb = 1 << 20
    payload = {
        "garbage": b"\xff" * mb,
        "json-string": json.dumps({"path": "/net/hostname", "pad": "x" * mb}).encode(),
        "json-array": b"[" + b"1," * (mb // 2) + b"1]",
        "many-members": json.dumps({f"k{i}": i for i in range(80_000)}).encode(),
    }[shape]
    assert len(payload) >= mb
    for _ in range(5):
        body = abused(site, f"{site.base}/main/request/config/get", payload)
        assert body["code"] == "invalid"
        assert "larger than 16384 bytes" in body["error"]


@pytest.mark.usefixtures("on_schedule")
@EXAMPLES
@given(st.integers(min_value=1, max_value=8000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_invalid_past_32_levels(site: Site, depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    inner = opener * depth + "1" + closer * depth
    payload = ('{"path": "/net/hostname", "x": ' + inner + "}").encode()
    body = abused(site, f"{site.base}/main/request/config/get", payload)
    assert body["code"] == "invalid"
    if depth + 1 > 32:
        assert any(word in body["error"] for word in ("deeper than 32", "larger than", "JSON"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


def wrong(name: str, value: Any) -> bool:
    """Whether ``value`` is of a type the request field ``name`` does not take."""
    if name == "path":
        return not isinstance(value, str)
    if name == "dry_run":
        return not isinstance(value, bool)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return False  # transaction: absent, or an integer
    return not (isinstance(value, str) and 0 < len(value) <= 128)


@pytest.mark.usefixtures("on_schedule")
@EXAMPLES
@given(st.data())
def test_wrong_types_are_invalid(site: Site, data: st.DataObject) -> None:
    field_name = data.draw(st.sampled_from(["path", "transaction", "dry_run"]))
    value = data.draw(json_values.filter(lambda v: wrong(field_name, v)))
    body = {"path": "/net/hostname", field_name: value}
    answer = abused(site, f"{site.base}/main/request/config/get", json.dumps(body).encode())
    assert answer["code"] == "invalid"
    assert field_name in answer["error"]


# a topic level a broker takes: no separators or wildcards, no control characters,
# surrogates or non-characters (MQTT 5 §1.5.4; Mosquitto disconnects a client that sends them)
level = st.text(st.characters(blacklist_characters="/+#", blacklist_categories=["Cc", "Cs", "Cn"]),
                min_size=1, max_size=30)


@pytest.mark.usefixtures("on_schedule")
@EXAMPLES
@given(level.filter(lambda a: a not in ACTIONS), st.lists(level, max_size=2))
def test_unknown_actions_are_answered_unknown_action(site: Site, action: str,
                                                     deeper: list[str]) -> None:
    full = "/".join([action, *deeper])
    body = abused(site, f"{site.base}/main/request/{full}", b"{}")
    assert body["code"] == "unknown_action"
    assert (body["meter"], body["action"]) == ("main", full)


@pytest.mark.usefixtures("on_schedule")
@EXAMPLES
@given(level.filter(lambda m: m not in ("main", "bridge")), st.sampled_from(ACTIONS))
def test_unknown_meters_are_answered_invalid(site: Site, meter: str, action: str) -> None:
    body = abused(site, f"{site.base}/{meter}/request/{action}", b'{"transaction": "u"}')
    assert (body["code"], body["meter"], body["transaction"]) == ("invalid", meter, "u")
    assert "unknown meter" in body["error"]


@pytest.mark.usefixtures("on_schedule")
@pytest.mark.parametrize("paced", [True, False], ids=["in-a-second", "all-at-once"])
def test_a_thousand_requests_are_each_answered_once(site: Site, paced: bool) -> None:
    mixes = [
        (f"{site.base}/main/request/reboot", b"{}"),  # not allowed
        (f"{site.base}/main/request/config/get", b"not json"),
        (f"{site.base}/main/request/self-destruct", b"{}"),
        (f"{site.base}/ghost/request/relay", b'{"relay": 1, "state": "closed"}'),
        (f"{site.base}/main/request/config/get", b'{"path": 5}'),
    ]
    sent: list[bytes] = []
    done = threading.Event()

    def flood() -> None:
        started = time.monotonic()
        for i in range(1000):
            topic, payload = mixes[i % len(mixes)]
            sent.append(site.send(topic, payload, "flood"))
            if paced:  # 1000 within about a second: one every millisecond
                time.sleep(max(0.0, started + i / 1000 - time.monotonic()))
        done.set()

    flooder = threading.Thread(target=flood, name="flooder")
    flooder.start()
    good = []
    try:
        while not done.is_set():  # the well-behaved requester, all through the flood
            good.append(site.ask_well(busy=not paced))
    finally:
        flooder.join(30)
    assert len(sent) == 1000
    wait_until(lambda: all(site.answered(c) for c in sent), timeout=60,
               what="an answer to every flood request")
    codes = [site.answer(c)["code"] for c in sent]
    assert set(codes) <= CODES
    assert {"not_allowed", "invalid", "unknown_action"} <= set(codes)
    assert good  # answered during the flood
    if paced:  # 1000 in a second fit the inbox
        assert "busy" not in codes
