"""One worker process as its supervisor sees it: started, listened to, signalled, waited for.

A worker is ``python -m gateway run -c FILE --worker J/N``: the supervisor's own command with
the worker's slot. It is started in a session of its own (a Ctrl-C on the terminal reaches
only the supervisor, which forwards one SIGTERM), with

- ``NOTIFY_SOCKET`` pointing at a datagram socket of this object: the worker's systemd
  notifications (``READY=1`` with the loopback ports it listens on, ``WATCHDOG=1``,
  ``RELOADING=1``, ``STOPPING=1``, ``STATUS=``) come here, not to systemd;
- ``WATCHDOG_USEC`` when the supervisor has a watchdog itself (the supervisor kills a worker
  whose pings stop: :mod:`gateway.runtime.supervisor`);
- its stdin a pipe from the supervisor, its *lifeline*: when the supervisor ends, however it
  ends, the pipe closes and the worker stops in order (:mod:`gateway.runtime.worker`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from gateway.observe import WorkerStatus

log = structlog.get_logger(__name__)

MODBUS_PORT_FIELD = "EGAUGE_MODBUS_PORT"
HTTP_PORT_FIELD = "EGAUGE_HTTP_PORT"
_DROPPED_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES")


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``signal SIGKILL`` (asyncio reports a signal as ``-signum``)."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class WorkerProcess:
    """Worker ``index`` of ``count``, polling ``meters``; one process at a time."""

    def __init__(self, index: int, count: int, config_path: str, meters: Sequence[str], *,
                 watchdog_usec: int | None = None,
                 on_ready: Callable[[WorkerProcess], None] = lambda _w: None,
                 argv: Sequence[str] | None = None) -> None:
        """``argv``: how to run the gateway (default ``python -m gateway``)."""
        self.index = index
        self.count = count
        self.config_path = config_path
        self.meters = tuple(meters)
        self.watchdog_usec = watchdog_usec
        self._on_ready = on_ready
        self._argv = list(argv) if argv is not None else [sys.executable, "-m", "gateway"]
        self.state = "starting"
        self.pid: int | None = None
        self.ready = False
        self.ready_at = 0.0  # monotonic time of the latest READY=1
        self.modbus_port: int | None = None
        self.http_port: int | None = None
        self.restarts = 0
        self.last_exit = ""
        self.last_ping = 0.0  # monotonic time of the latest WATCHDOG=1 (or of the start)
        self.status = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._announced = False  # worker_ready logged for this run

    def view(self) -> WorkerStatus:
        return WorkerStatus(self.index, self.state, self.meters, self.pid, self.http_port,
                            self.ready, self.restarts, self.last_exit)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def command(self) -> list[str]:
        return [*self._argv, "run", "-c", self.config_path, "--worker",
                f"{self.index}/{self.count}"]

    async def start(self) -> None:
        """Start the process (an :class:`OSError` when it cannot be)."""
        address = self._listen()
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env["NOTIFY_SOCKET"] = address
        if self.watchdog_usec:
            env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        self.ready, self.modbus_port, self.http_port = False, None, None
        self._announced = False
        self._proc = await asyncio.create_subprocess_exec(
            *self.command(), stdin=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        self.pid = self._proc.pid
        self.state = "running"
        self.last_ping = time.monotonic()

    async def wait(self) -> int:
        """Wait until the process has ended; its exit code (``-signum`` for a signal)."""
        assert self._proc is not None
        code = await self._proc.wait()
        self._close_socket()
        self.state = "stopped"
        self.ready = False
        self.modbus_port = self.http_port = None
        self.last_exit = describe_exit(code)
        return code

    def send_signal(self, sig: signal.Signals) -> bool:
        """Signal the running process; False when there is none."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return False
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return False
        return True

    # -- its notifications ------------------------------------------------------------------

    def _listen(self) -> str:
        """A fresh abstract datagram socket for this run's notifications; its address."""
        self._close_socket()
        name = f"egauge-gateway-{os.getpid()}-w{self.index}-{secrets.token_hex(4)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind("\0" + name)
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self._sock = sock
        return "@" + name

    def _close_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.notified(parse_fields(data))

    def notified(self, fields: Mapping[str, str]) -> None:
        """One notification of the worker (a mapping of its ``KEY=value`` lines)."""
        now = time.monotonic()
        if "STATUS" in fields:
            self.status = fields["STATUS"]
        if fields.get("WATCHDOG") == "1":
            self.last_ping = now
        if fields.get("RELOADING") == "1":
            self.ready = False
        if fields.get("STOPPING") == "1":
            self.ready = False
            self.state = "stopping"
        if fields.get("READY") == "1" and self.state == "running":
            self.modbus_port = _port(fields.get(MODBUS_PORT_FIELD)) or self.modbus_port
            self.http_port = _port(fields.get(HTTP_PORT_FIELD)) or self.http_port
            self.ready, self.ready_at, self.last_ping = True, now, now
            if not self._announced:
                self._announced = True
                log.info("worker_ready", worker=self.index, pid=self.pid,
                         modbus_port=self.modbus_port, http_port=self.http_port)
            self._on_ready(self)


def parse_fields(data: bytes) -> dict[str, str]:
    """``KEY=value`` lines of one notify datagram (lines without ``=`` are ignored)."""
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def _port(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    port = int(text)
    return port if 0 < port < 65536 else None
