"""The worker side of ``gateway.workers``: ``egauge-gateway run -c FILE --worker J/N``.

A worker is an ordinary :class:`~gateway.runtime.app.App` over its share of the instance's
meters (:func:`gateway.config.shard.instance` with ``Config.worker``), with three additions:

- every log event carries ``worker=J``;
- its ``READY=1`` notification (to its supervisor's socket) names the loopback ports its
  Modbus server and HTTP endpoint listen on, so the supervisor can relay to them;
- it watches its stdin, the pipe its supervisor holds open: at the end of the pipe (the
  supervisor ended, however it ended) it stops in order, so no worker outlives its
  supervisor and polls on, unsupervised.

The slot comes from the supervisor on the command line, never from the file (one file for
every worker).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable
from dataclasses import replace

import structlog

from gateway.config import Config, ShardConfig
from gateway.runtime.app import App
from gateway.runtime.component import Component
from gateway.runtime.notify import Notifier
from gateway.runtime.workerproc import HTTP_PORT_FIELD, MODBUS_PORT_FIELD

log = structlog.get_logger(__name__)


def parse_slot(text: str) -> ShardConfig | None:
    """``"J/N"`` as a worker slot (0 <= J < N), or ``None`` when it is not one."""
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit()):
        return None
    slot = ShardConfig(int(index), int(count))
    return slot if 0 <= slot.index < slot.count else None


class WorkerNotifier(Notifier):
    """Notifications to the supervisor; ``READY=1`` also names the listening ports."""

    def __init__(self, address: str | None) -> None:
        super().__init__(address)
        self.fields: Callable[[], list[str]] = list

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *self.fields(), *((f"STATUS={status}",) if status else ()))


def listening_fields(app: App) -> list[str]:
    """The ``EGAUGE_*_PORT=`` lines of the app's loopback listeners."""
    fields = []
    if app.modbus is not None and app.modbus.port:
        fields.append(f"{MODBUS_PORT_FIELD}={app.modbus.port}")
    if app.http is not None and app.http.port:
        fields.append(f"{HTTP_PORT_FIELD}={app.http.port}")
    return fields


def lifeline(app: App) -> None:
    """An app extension: stop in order when stdin -- the supervisor's pipe -- ends."""
    try:
        piped = stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return
    if not piped:
        return
    loop: asyncio.AbstractEventLoop | None = None

    def readable() -> None:
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            assert loop is not None
            loop.remove_reader(0)
            log.warning("supervisor_gone")
            app.request_stop()

    async def start() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        os.set_blocking(0, False)
        loop.add_reader(0, readable)

    async def stop() -> None:
        if loop is not None:
            loop.remove_reader(0)

    app.add(Component("lifeline", start=start, stop=stop))


def run_worker(config: Config, slot: ShardConfig) -> int:
    """Run worker ``slot`` of ``config`` until it is stopped; its exit code."""
    structlog.contextvars.bind_contextvars(worker=slot.index)
    notifier = WorkerNotifier(os.environ.get("NOTIFY_SOCKET"))
    app = App(replace(config, worker=slot), notifier=notifier, owns_process=True,
              extensions=[lifeline])
    notifier.fields = lambda: listening_fields(app)
    return asyncio.run(app.run())
