"""Secret-shaped keys in a request, end to end: ``python -m gateway run`` against a real
Mosquitto and the simulator over HTTP. A ``config/set`` whose value carries ``pwd``,
``password`` and ``authorization`` at several depths reaches the meter as sent, and none of
those values shows on ``bridge/audit``, in any response (the usual topic and an MQTT 5
response topic, the dry run's reported call, a later ``config/get``), in the log (JSON,
debug level) or on the status page."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.simulator import SimMeter, ThreadedSimServer
from tests.support.broker import Broker
from tests.support.lifecycle import PASSWORD, gateway_process
from tests.support.mqtt import Received, Subscriber, subscriber
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SECRETS = ("pwd-Zq81-only-here", "password-Kx27-only-here", "authorization-Vw53-only-here",
           "deep-pwd-Ty64-only-here")
VALUE = {
    "pwd": SECRETS[0],                                                  # depth 1
    "site": {"name": "north", "password": SECRETS[1]},                  # depth 2
    "hooks": [{"url": "https://example.invalid/h",
               "headers": {"Authorization": f"Bearer {SECRETS[2]}"}}],  # depth 4, in a list
    "a": {"b": [[{"c": {"pwd": SECRETS[3]}}]]},                         # depth 6
}


@pytest.fixture
def meter() -> Iterator[tuple[SimMeter, ThreadedSimServer]]:
    sim_meter = SimMeter("SIM0777", password=PASSWORD)
    with ThreadedSimServer([sim_meter]) as sim:
        yield sim_meter, sim


def config(sim: ThreadedSimServer, sim_meter: SimMeter, broker: Broker, prefix: str,
           state_dir: Path, http_port: int) -> str:
    return f"""
gateway: {{id: masking, log_level: debug, log_format: json, state_dir: "{state_dir}"}}
meters:
  - id: main
    url: {sim.url_for(sim_meter)}
    username: owner
    password: ${{SIM_PASSWORD}}
    poll_interval_s: 0.5
    commands: {{allow: ["config:/remote"]}}
mqtt: {{host: {broker.host}, port: {broker.port}, base_topic: {prefix},
       homeassistant: {{enabled: false}}}}
modbus: {{enabled: false}}
http: {{host: 127.0.0.1, port: {http_port}}}
"""


def ask(sub: Subscriber, base: str, action: str, body: dict[str, Any]) -> Received:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = f"{base}/clients/masking"
    props.CorrelationData = body["transaction"].encode()
    sub.client.publish(f"{base}/main/request/{action}", json.dumps(body), qos=1,
                       properties=props)
    return sub.wait_for(f"{base}/main/response/{action}",
                        lambda m: m.json()["transaction"] == body["transaction"])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return bytes(reply.read()).decode()


def test_secret_shaped_keys_at_every_depth_are_masked_everywhere(
        tmp_path: Path, broker: Broker, topic_prefix: str,
        meter: tuple[SimMeter, ThreadedSimServer]) -> None:
    sim_meter, sim = meter
    base = topic_prefix
    with subscriber(broker, f"{base}/#", v5=True) as sub:
        def text(modbus_port: int, http_port: int) -> str:
            return config(sim, sim_meter, broker, base, tmp_path / "state", http_port)

        with gateway_process(tmp_path, text) as gw:
            sub.wait_for(f"{base}/main/state", timeout=20)
            written = ask(sub, base, "config/set",
                          {"path": "/remote/vault", "value": VALUE, "transaction": "set"})
            dry = ask(sub, base, "config/set", {"path": "/remote/vault", "value": VALUE,
                                                "dry_run": True, "transaction": "dry"})
            read = ask(sub, base, "config/get", {"path": "/remote/vault", "transaction": "get"})
            for transaction in ("set", "dry", "get"):
                sub.wait_for(f"{base}/bridge/audit",
                             lambda m, t=transaction: m.json()["transaction"] == t)
            wait_until(lambda: len(sub.on(f"{base}/clients/masking")) == 3,
                       what="the three answers on the response topic")
            status_page = fetch(f"http://127.0.0.1:{gw.http_port}/")
            metrics = fetch(f"http://127.0.0.1:{gw.http_port}/metrics")
            assert gw.stop() == 0
        log_text = gw.log.read_text(encoding="utf-8")
    # the value travelled: the meter holds it as sent
    assert sim_meter.config.get(["remote", "vault"]) == VALUE
    assert written.json()["status"] == "ok"
    assert dry.json()["data"]["call"]["body"]["pwd"] == "***"
    assert read.json()["data"]["value"]["site"] == {"name": "north", "password": "***"}
    audits = [m.json() for m in sub.on(f"{base}/bridge/audit")]
    assert audits[0]["request"]["value"]["a"] == {"b": [[{"c": {"pwd": "***"}}]]}
    assert "main" in status_page
    shown = {
        "audit": "".join(m.payload.decode() for m in sub.on(f"{base}/bridge/audit")),
        "responses": "".join(m.payload.decode() for m in sub.messages
                             if "/response/" in m.topic or "/clients/" in m.topic),
        "every topic the gateway publishes": "".join(
            m.payload.decode(errors="replace") for m in sub.messages if "/request/" not in m.topic),
        "log": log_text,
        "status page": status_page,
        "metrics": metrics,
    }
    assert '"event": "command"' in log_text or '"event":"command"' in log_text
    for where, what in shown.items():
        for secret in SECRETS:
            assert secret not in what, f"{secret} in the {where}"
