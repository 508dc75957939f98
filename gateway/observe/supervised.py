"""The HTTP endpoint of a gateway that runs worker processes (``gateway.workers`` > 1).

The supervisor listens on ``http.port``; each worker serves its own endpoint on a loopback
port of its own, which only the supervisor reads:

- ``/healthz``: 200 while the supervisor answers (it restarts dead workers itself);
- ``/readyz``: 200 when the supervisor's own outputs are up (the MQTT bridge, the Modbus
  relay) and every worker is running and ready by its own ``/readyz``; the reasons say which
  worker is not, and why;
- ``/metrics``: every worker's series, labelled ``worker="<j>"``, and the supervisor's own
  (workers up, ready and restarted, the relay's counters);
- ``/``: a page of the workers (process, state, meters, restarts, readiness) that links each
  worker's own status page, served here at ``/workers/<j>/`` (and its ``/metrics``,
  ``/readyz`` and ``/healthz`` below it).
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway import __version__
from gateway.config import Config, HttpConfig
from gateway.errors import UpstreamError
from gateway.observe.metrics import CONTENT_TYPE, merged_exposition, wanted_names
from gateway.observe.view import MqttStats, OutputStatus
from gateway.support import Fetched, HttpLimits, HttpStats, Request, Response, WebServer, fetch

log = structlog.get_logger(__name__)

_JSON = "application/json"
_NO_CACHE = (("Cache-Control", "no-store"),)
WORKER_PAGES = ("", "metrics", "readyz", "healthz")
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker process as the supervisor knows it."""

    index: int
    state: str  # starting, running, stopping, restarting, stopped
    meters: tuple[str, ...]
    pid: int | None = None
    http_port: int | None = None  # its loopback endpoint, once it reported ready
    ready: bool = False  # reported READY to the supervisor since it started
    restarts: int = 0
    last_exit: str = ""  # "exit code 1", "signal SIGKILL"

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True, slots=True)
class RelayCounters:
    relayed: int
    target_failed: int
    unanswered: int
    connections: int


class SupervisorView(Protocol):
    """What the supervisor's endpoint reads, at the moment it reads it."""

    @property
    def config(self) -> Config: ...

    @property
    def stopping(self) -> bool: ...

    def workers(self) -> Sequence[WorkerStatus]: ...

    def outputs(self) -> Sequence[OutputStatus]:
        """The supervisor's own outputs (the MQTT bridge, the Modbus relay)."""
        ...

    @property
    def mqtt(self) -> MqttStats | None: ...

    @property
    def relay(self) -> RelayCounters | None: ...


def _json(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), _JSON, _NO_CACHE)


class SupervisorEndpoint:
    """Serves the gateway's one HTTP endpoint over its workers' loopback endpoints."""

    def __init__(self, cfg: HttpConfig, view: SupervisorView, *,
                 fetcher: Callable[[int, str], Awaitable[Fetched]] | None = None,
                 limits: HttpLimits | None = None) -> None:
        self._view = view
        self._fetch = fetcher or (lambda port, path: fetch("127.0.0.1", port, path,
                                                           timeout_s=FETCH_TIMEOUT_S))
        self._server = WebServer(self.handle, cfg.host, cfg.port, limits=limits)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def stats(self) -> HttpStats:
        return self._server.stats

    async def start(self) -> None:
        server = self._server
        try:
            await server.start()
        except OSError as exc:
            raise OSError(exc.errno, f"http: cannot listen on {server.host}:{server.port}: "
                                     f"{exc.strerror or exc}") from exc
        log.info("http_listening", host=server.host, port=server.port, workers=True)

    async def close(self) -> None:
        await self._server.close()

    def handle(self, req: Request) -> Response | Awaitable[Response]:
        if req.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        path = req.path
        if path == "/healthz":
            return _json({"status": "ok", "workers": len(self._view.workers())})
        if path == "/readyz":
            return self._ready()
        if path == "/metrics":
            return self._metrics(req)
        if path == "/":
            return self._status()
        if path.startswith("/workers/"):
            index, _, rest = path[len("/workers/"):].partition("/")
            if index.isdigit() and rest in WORKER_PAGES:
                return self._worker_page(int(index), rest)
        return Response(404, b"not found\n")

    async def _ask(self, worker: WorkerStatus, path: str) -> Fetched | None:
        if not worker.running or worker.http_port is None:
            return None
        try:
            answer = await self._fetch(worker.http_port, path)
        except UpstreamError as exc:
            log.info("worker_endpoint_failed", worker=worker.index, path=path, error=str(exc))
            return None
        return answer

    async def _ask_all(self, path: str) -> list[tuple[WorkerStatus, Fetched | None]]:
        workers = list(self._view.workers())
        answers = await asyncio.gather(*(self._ask(w, path) for w in workers))
        return list(zip(workers, answers, strict=True))

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the gateway is ready, and the JSON that says so (``/readyz``)."""
        view = self._view
        reasons: list[str] = []
        if view.stopping:
            reasons.append("gateway: shutting down")
        reasons.extend(f"{o.name}: {o.state}" for o in view.outputs() if not o.up)
        fresh: list[str] = []
        workers: dict[str, bool] = {}
        for worker, answer in await self._ask_all("/readyz"):
            ok = False
            if not worker.running:
                reasons.append(f"worker {worker.index}: {worker.state}")
            elif answer is None:
                reasons.append(f"worker {worker.index}: not answering yet")
            else:
                data = _loads(answer.body)
                ok = answer.status == 200
                fresh.extend(str(m) for m in data.get("fresh_meters", ()))
                if not ok:
                    reasons.extend(f"worker {worker.index}: {r}"
                                   for r in data.get("reasons", ()) or ("not ready",))
            workers[str(worker.index)] = ok
        ready = not reasons
        return ready, {"ready": ready, "reasons": reasons, "fresh_meters": fresh,
                       "workers": workers}

    async def _ready(self) -> Response:
        ready, body = await self.readiness()
        return _json(body, 200 if ready else 503)

    async def _metrics(self, req: Request) -> Response:
        """Every worker's families and the supervisor's own; ``name[]`` is passed on to the
        workers and picks the supervisor's own families as well."""
        names = wanted_names(req.query)
        query = "&".join(f"name%5B%5D={quote(n)}" for n in sorted(names))
        parts = [(str(w.index), a.body)
                 for w, a in await self._ask_all(f"/metrics?{query}" if query else "/metrics")
                 if a is not None and a.status == 200]
        own = [f for f in self._own_metrics() if not names or f.name in names]
        # relabelling the workers' text is CPU-bound (at 2 x 500 meters about 40 ms), which
        # on this loop would hold every relayed Modbus request; in a thread the loop gets the
        # interpreter back every switch interval (5 ms)
        body = await asyncio.to_thread(merged_exposition, parts, own)
        return Response(200, body, CONTENT_TYPE, _NO_CACHE)

    def _own_metrics(self) -> Iterable[Metric]:
        view = self._view
        info = GaugeMetricFamily("egauge_supervisor_info",
                                 "The gateway's id and version (the supervisor).",
                                 labels=["gateway", "version"])
        info.add_metric([view.config.gateway.id, __version__], 1)
        up = GaugeMetricFamily("egauge_worker_up", "1 while the worker process runs.",
                               labels=["worker"])
        ready = GaugeMetricFamily("egauge_worker_ready",
                                  "1 once the running worker reported ready.", labels=["worker"])
        restarts = CounterMetricFamily("egauge_worker_restarts",
                                       "Times the worker was started again after it ended.",
                                       labels=["worker"])
        meters = GaugeMetricFamily("egauge_worker_meters", "Meters the worker polls.",
                                   labels=["worker"])
        for w in view.workers():
            label = [str(w.index)]
            up.add_metric(label, 1 if w.running else 0)
            ready.add_metric(label, 1 if w.running and w.ready else 0)
            restarts.add_metric(label, w.restarts)
            meters.add_metric(label, len(w.meters))
        families: list[Metric] = [info, up, ready, restarts, meters]
        mqtt = view.mqtt
        if mqtt is not None:
            families.append(GaugeMetricFamily(
                "egauge_supervisor_mqtt_connected",
                "1 while the supervisor's own session (bridge/state) is connected.",
                value=1 if mqtt.connected else 0))
        relay = view.relay
        if relay is not None:
            families += [
                CounterMetricFamily("egauge_modbus_relayed", "Requests passed to a worker.",
                                    value=relay.relayed),
                CounterMetricFamily("egauge_modbus_relay_target_failed",
                                    "Requests answered 0x0B: the unit's worker was not "
                                    "serving.", value=relay.target_failed),
                CounterMetricFamily("egauge_modbus_relay_unanswered",
                                    "Requests for unknown unit ids left unanswered.",
                                    value=relay.unanswered),
                GaugeMetricFamily("egauge_modbus_relay_connections",
                                  "Open client connections to the one Modbus endpoint.",
                                  value=relay.connections),
            ]
        return families

    async def _worker_page(self, index: int, page: str) -> Response:
        worker = next((w for w in self._view.workers() if w.index == index), None)
        if worker is None:
            return Response(404, b"no such worker\n")
        answer = await self._ask(worker, "/" + page)
        if answer is None:
            return Response(503, f"worker {index}: {worker.state}\n".encode(),
                            headers=_NO_CACHE)
        kind = answer.header("content-type", "application/octet-stream")
        return Response(answer.status, answer.body, kind, _NO_CACHE)

    async def _status(self) -> Response:
        ready, body = await self.readiness()
        page = render_workers(self._view, ready, body["reasons"], body["workers"], time.time())
        return Response(200, page, "text/html; charset=utf-8", _NO_CACHE)


def _loads(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;
text-align:left}td.n{text-align:right}.on{color:#070}.off{color:#b00}"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_workers(view: SupervisorView, ready: bool, reasons: Sequence[str],
                   workers_ready: Mapping[str, bool], now: float) -> bytes:
    """The supervisor's status page: its outputs and one row per worker, linked."""
    gateway_id = view.config.gateway.id
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        '<meta http-equiv="refresh" content="5">',
        f"<title>egauge-gateway {_e(gateway_id)}</title><style>{_STYLE}</style>",
        f"</head><body><h1>egauge-gateway <small>{_e(gateway_id)}</small></h1>",
        f"<p>version {_e(__version__)} &middot; ",
        "<span class=on>ready</span>" if ready else
        "<span class=off>not ready</span>: " + _e("; ".join(reasons)),
        "</p>",
    ]
    outputs = view.outputs()
    if outputs:
        rows = "".join(f"<tr><td>{_e(o.name)}</td><td>{_e(o.address)}</td>"
                       f"<td class={'on' if o.up else 'off'}>{_e(o.state)}</td></tr>"
                       for o in outputs)
        parts.append("<h2>Outputs</h2><table><tr><th>output</th><th>address</th>"
                     f"<th>state</th></tr>{rows}</table>")
    rows = "".join(
        f"<tr><td><a href=\"/workers/{w.index}/\">worker {w.index}</a></td>"
        f"<td class=n>{_e(w.pid or '–')}</td>"
        f"<td class={'on' if w.running else 'off'}>{_e(w.state)}</td>"
        f"<td class={'on' if workers_ready.get(str(w.index)) else 'off'}>"
        f"{'ready' if workers_ready.get(str(w.index)) else 'not ready'}</td>"
        f"<td class=n>{len(w.meters)}</td><td class=n>{w.restarts}</td>"
        f"<td>{_e(w.last_exit)}</td>"
        f"<td><a href=\"/workers/{w.index}/metrics\">metrics</a></td></tr>"
        for w in view.workers())
    parts.append("<h2>Workers</h2><table><tr><th>worker</th><th>pid</th><th>state</th>"
                 "<th>readiness</th><th>meters</th><th>restarts</th><th>last exit</th>"
                 f"<th></th></tr>{rows}</table>")
    parts.append(f"<p>as of {_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))}</p>")
    parts.append("</body></html>")
    return "".join(parts).encode("utf-8")
