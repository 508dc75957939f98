"""deploy/kubernetes/ without a cluster: the manifests parse and are wired to each other (probes
on the endpoint's paths and ports, the ordinal and replica count into the shard settings,
secrets and volumes where the configuration reads them), and a StatefulSet simulation --
three gateway processes started with the environment and configuration Kubernetes would give
pods egauge-gateway-0..2 -- polls the fleet exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config, load_yaml, shard
from gateway.simulator import SimMeter, ThreadedSimServer, fleet
from tests.support.broker import Broker, free_port
from tests.support.mqtt import subscriber
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "kubernetes"
METERS = 14  # m0..m13: the shard hash gives each of the three pods some
PASSWORD = "k8s-Pod-7q2w"


def manifest(name: str) -> dict[str, Any]:
    data = load_yaml(K8S / name)
    assert isinstance(data, dict), name
    return data


@dataclass(frozen=True)
class Manifests:
    statefulset: dict[str, Any]
    configmap: dict[str, Any]
    secret: dict[str, Any]
    services: list[dict[str, Any]]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.statefulset["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        [container] = self.pod["containers"]
        return dict(container)

    @property
    def replicas(self) -> int:
        return int(self.statefulset["spec"]["replicas"])

    def ports(self) -> dict[str, int]:
        return {p["name"]: p["containerPort"] for p in self.container["ports"]}

    def env(self, pod_name: str) -> dict[str, str]:
        """The container's environment as the kubelet resolves it for ``pod_name`` (and the
        host name every container of a pod gets)."""
        out = {"HOSTNAME": pod_name}
        secret = self.secret["stringData"]
        for var in self.container["env"]:
            source = var.get("valueFrom")
            if source is None:
                out[var["name"]] = var["value"]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert ref["name"] == self.secret["metadata"]["name"]
                out[var["name"]] = secret[ref["key"]]
            else:
                assert source["fieldRef"]["fieldPath"] == "metadata.name"
                out[var["name"]] = pod_name
        return out

    def mount(self, volume: str) -> str:
        [path] = [m["mountPath"] for m in self.container["volumeMounts"] if m["name"] == volume]
        return str(path)

    def config_text(self) -> str:
        [text] = self.configmap["data"].values()
        return str(text)

    def config_path(self) -> str:
        args = self.container["args"]
        assert args[:2] == ["run", "-c"]
        return str(args[2])


@pytest.fixture(scope="module")
def k8s() -> Manifests:
    services = manifest("services.yaml")
    assert services["kind"] == "List"
    return Manifests(manifest("statefulset.yaml"), manifest("configmap.yaml"),
                     manifest("secret.yaml"), services["items"])


def test_kustomization_lists_every_manifest_that_exists() -> None:
    listed = manifest("kustomization.yaml")["resources"]
    assert all((K8S / name).is_file() for name in listed)
    assert {"statefulset.yaml", "configmap.yaml", "secret.yaml", "services.yaml"} <= set(listed)


def test_probes_are_on_the_endpoints_health_and_readiness(k8s: Manifests) -> None:
    c = k8s.container
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    config = load_config_for(k8s, 0, Path("/nonexistent"))
    assert config.http.host == "0.0.0.0"  # the kubelet probes the pod's address
    assert k8s.ports() == {"http": config.http.port, "modbus": config.modbus.port}
    grace = k8s.pod["terminationGracePeriodSeconds"]
    assert grace > config.gateway.shutdown_timeout_s


def test_the_ordinal_and_the_replicas_make_the_shard(k8s: Manifests, tmp_path: Path) -> None:
    sts = k8s.statefulset
    assert sts["spec"]["serviceName"] == "egauge-gateway"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s.env("egauge-gateway-0")["REPLICAS"] == str(k8s.replicas)
    seen = set()
    for ordinal in range(k8s.replicas):
        config = load_config_for(k8s, ordinal, tmp_path)
        assert config.shard.index == ordinal
        assert config.shard.count == k8s.replicas
        view = shard.instance(config)  # every pod on the same ports of its own address
        assert (view.modbus.port, view.http.port) == (config.modbus.port, config.http.port)
        seen.update(m.id for m in view.meters)
    assert seen == {m.id for m in load_config_for(k8s, 0, tmp_path).meters}


def test_secrets_volumes_and_services_are_wired(k8s: Manifests, tmp_path: Path) -> None:
    config = load_config_for(k8s, 0, tmp_path)
    secret_dir = k8s.mount("secrets")
    keys = set(k8s.secret["stringData"])
    for meter in manifest_meters(k8s):
        path = Path(meter["password_file"])
        assert str(path.parent) == secret_dir, meter["id"]
        assert path.name in keys, meter["id"]
    assert "password" not in json.dumps(manifest_meters(k8s)).replace("password_file", "")
    volumes = {v["name"]: v for v in k8s.pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == k8s.secret["metadata"]["name"]
    assert volumes["config"]["configMap"]["name"] == k8s.configmap["metadata"]["name"]
    assert Path(k8s.config_path()).parent == Path(k8s.mount("config"))
    [claim] = k8s.statefulset["spec"]["volumeClaimTemplates"]
    assert k8s.mount(claim["metadata"]["name"]) == config.gateway.state_dir

    by_name = {s["metadata"]["name"]: s["spec"] for s in k8s.services}
    headless = by_name.pop("egauge-gateway")
    assert headless["clusterIP"] == "None"
    assert headless["selector"].items() <= k8s.statefulset["spec"]["template"]["metadata"][
        "labels"].items()
    assert sorted(by_name) == [f"egauge-gateway-{i}" for i in range(k8s.replicas)]
    for name, spec in by_name.items():
        assert spec["selector"] == {"statefulset.kubernetes.io/pod-name": name}
    for spec in [headless, *by_name.values()]:
        assert {p["targetPort"] for p in spec["ports"]} == set(k8s.ports())


def manifest_meters(k8s: Manifests) -> list[dict[str, Any]]:
    import yaml

    meters: list[dict[str, Any]] = yaml.safe_load(k8s.config_text())["meters"]
    return meters


def load_config_for(k8s: Manifests, ordinal: int, tmp_path: Path) -> Any:
    """The shipped ConfigMap's configuration as pod ``ordinal`` loads it (its password files
    stood in for by files under ``tmp_path`` with the Secret's values)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    text = k8s.config_text()
    for key, value in k8s.secret["stringData"].items():
        (secrets / key).write_text(value)
    text = text.replace(k8s.mount("secrets"), str(secrets))
    path = tmp_path / f"gateway-{ordinal}.yaml"
    path.write_text(text)
    return load_config(path, env=k8s.env(f"egauge-gateway-{ordinal}"))


# -- the StatefulSet simulation ------------------------------------------------------------


@dataclass
class Pod:
    name: str
    address: str
    proc: subprocess.Popen[bytes]
    log: Path


def pod_config(k8s: Manifests, broker: Broker, prefix: str, tmp_path: Path, urls: list[str],
               ordinal: int, http_port: int, modbus_port: int) -> Path:
    """The ConfigMap's gateway.yaml with what differs here: the simulated meters (their
    passwords in files as the Secret volume holds them), the test broker, each pod's volume
    and its own address (127.0.0.<2 + ordinal>, the same ports on every pod)."""
    import yaml

    data = yaml.safe_load(k8s.config_text())
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    data["meters"] = []
    for i, url in enumerate(urls):
        (secrets / f"meter-m{i}").write_text(PASSWORD + "\n")
        data["meters"].append({"id": f"m{i}", "url": url, "username": "owner",
                               "password_file": str(secrets / f"meter-m{i}"),
                               "poll_interval_s": 0.5, "modbus_unit_id": i + 1})
    data["mqtt"].update(host=broker.host, port=broker.port, base_topic=prefix,
                        homeassistant={"prefix": f"{prefix}-ha"})
    data["gateway"]["state_dir"] = str(tmp_path / f"pvc-state-{ordinal}")
    data["gateway"]["shutdown_timeout_s"] = 5
    address = f"127.0.0.{2 + ordinal}"
    data["http"].update(host=address, port=http_port)
    data["modbus"].update(host=address, port=modbus_port)
    path = tmp_path / f"pod-{ordinal}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def pods(k8s: Manifests, broker: Broker, topic_prefix: str, tmp_path: Path,
         threaded_simulator: Callable[..., ThreadedSimServer], sim_meters: list[SimMeter]
         ) -> Iterator[list[Pod]]:
    sim = threaded_simulator(sim_meters)
    http_port, modbus_port = free_port(), free_port()
    started: list[Pod] = []
    try:
        for ordinal in range(k8s.replicas):
            name = f"egauge-gateway-{ordinal}"
            cfg = pod_config(k8s, broker, topic_prefix, tmp_path, sim.urls, ordinal,
                             http_port, modbus_port)
            env = {k: v for k, v in os.environ.items()
                   if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
            env.update(k8s.env(name), PYTHONPATH=str(ROOT))
            log = tmp_path / f"{name}.log"
            proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=log.open("wb"))
            started.append(Pod(name, f"127.0.0.{2 + ordinal}:{http_port}", proc, log))
        yield started
    finally:
        for pod in started:
            if pod.proc.poll() is None:
                pod.proc.terminate()
        for pod in started:
            try:
                pod.proc.wait(20)
            except subprocess.TimeoutExpired:
                pod.proc.kill()
                pod.proc.wait(5)


@pytest.fixture
def sim_meters() -> list[SimMeter]:
    return fleet(METERS, password=PASSWORD)


def probe(pod: Pod, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{pod.address}{path}", timeout=5) as r:
            return int(r.status)
    except OSError:
        return 0


def test_three_pods_of_the_statefulset_poll_the_fleet_exactly_once(
        k8s: Manifests, pods: list[Pod], sim_meters: list[SimMeter], broker: Broker,
        topic_prefix: str) -> None:
    ids = [f"m{i}" for i in range(METERS)]
    with subscriber(broker, f"{topic_prefix}/bridge/+/info") as sub:
        infos = {}
        for ordinal, pod in enumerate(pods):
            message = sub.wait_for(f"{topic_prefix}/bridge/site-{ordinal}/info", timeout=30)
            infos[pod.name] = message.json()
    served = {name: set(info["meters"]) for name, info in infos.items()}
    assert sorted(m for s in served.values() for m in s) == sorted(ids), served
    assert all(served.values()), f"a pod without meters: {served}"

    for pod in pods:  # the probes the kubelet would run
        assert probe(pod, k8s.container["livenessProbe"]["httpGet"]["path"]) == 200
        assert wait_until(lambda pod=pod: probe(pod, k8s.container["readinessProbe"]["httpGet"]
                                                ["path"]) == 200, timeout=20,
                          what=f"{pod.name} ready")
    wait_until(lambda: all(m.logins == 1 for m in sim_meters), timeout=20,
               what="every meter logged in to")
    assert [m.logins for m in sim_meters] == [1] * METERS, "one pod per meter"
    for pod in pods:
        assert pod.proc.poll() is None, pod.log.read_text()[-2000:]
        assert PASSWORD not in pod.log.read_text()
