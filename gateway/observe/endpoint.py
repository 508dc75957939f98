"""The gateway's own HTTP endpoint (``http:``; loopback by default).

- ``GET /healthz``: 200 while the process runs (its event loop answers);
- ``GET /readyz``: 200 when ready, 503 otherwise, with a JSON reason
  (:mod:`gateway.observe.health`);
- ``GET /metrics``: Prometheus text format (:mod:`gateway.observe.metrics`); with
  ``?name[]=<family>`` (repeated) only those families, as Prometheus' client libraries do;
- ``GET /``: the status page (:mod:`gateway.observe.status`).

``HEAD`` works wherever ``GET`` does; other methods get 405, unknown paths 404.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from gateway.config import HttpConfig
from gateway.observe.health import readiness
from gateway.observe.metrics import (
    CONTENT_TYPE,
    GatewayCollector,
    exposition_soon,
    registry_for,
    wanted_names,
)
from gateway.observe.status import render_status
from gateway.observe.view import GatewayView
from gateway.support import HttpLimits, HttpStats, Request, Response, WebServer

log = structlog.get_logger(__name__)

_JSON = "application/json"
_NO_CACHE = (("Cache-Control", "no-store"),)


def json_response(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, body, _JSON, _NO_CACHE)


class HttpEndpoint:
    """Serves ``/healthz``, ``/readyz``, ``/metrics`` and ``/`` over one view of a gateway."""

    def __init__(self, cfg: HttpConfig, view: GatewayView, *,
                 clock: Callable[[], float] = time.time,
                 limits: HttpLimits | None = None) -> None:
        self._view = view
        self._clock = clock
        self.registry = registry_for(view, clock)
        self._server = WebServer(self.handle, cfg.host, cfg.port, limits=limits)
        self._routes: dict[str, Callable[[Request], Response | Awaitable[Response]]] = {
            "/": self._status, "/healthz": self._health, "/readyz": self._ready,
            "/metrics": self._metrics,
        }

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def stats(self) -> HttpStats:
        """The server's counters (connections, answers, rejections, timeouts)."""
        return self._server.stats

    @property
    def url(self) -> str:
        host = self._server.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def start(self) -> None:
        """Listen; a port in use is an :class:`OSError` naming the address (exit code 3)."""
        server = self._server
        try:
            await server.start()
        except OSError as exc:
            raise OSError(exc.errno, f"http: cannot listen on {server.host}:{server.port}: "
                                     f"{exc.strerror or exc}") from exc
        log.info("http_listening", host=server.host, port=server.port)

    async def close(self) -> None:
        await self._server.close()

    def handle(self, req: Request) -> Response | Awaitable[Response]:
        route = self._routes.get(req.path)
        if route is None:
            return Response(404, b"not found\n")
        if req.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=(("Allow", "GET, HEAD"),))
        return route(req)

    def _health(self, _req: Request) -> Response:
        return json_response({"status": "ok"})

    def _ready(self, _req: Request) -> Response:
        ready = readiness(self._view, self._clock())
        return json_response(ready.as_json(), 200 if ready.ready else 503)

    async def _metrics(self, req: Request) -> Response:
        return Response(200, await self.scrape(wanted_names(req.query)), CONTENT_TYPE,
                        _NO_CACHE)

    async def scrape(self, names: Iterable[str] = ()) -> bytes:
        """The exposition (of the families ``names``, or all), built and written in pieces
        between which the event loop runs: a whole scrape of 500 meters takes about 90 ms,
        which would otherwise hold every poll due meanwhile."""
        collector = GatewayCollector(self._view, self._clock, names)
        return await exposition_soon(await collector.collect_soon())

    def _status(self, _req: Request) -> Response:
        body = render_status(self._view, self._clock())
        return Response(200, body, "text/html; charset=utf-8", _NO_CACHE)
