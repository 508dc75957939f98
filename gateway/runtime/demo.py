"""``egauge-gateway demo``: simulated meters, an MQTT broker and the gateway, all on loopback.

The broker: one already listening on ``localhost:1883`` is used (under the base topic
``egauge-demo``, without Home Assistant discovery, since it may be a real installation's);
otherwise ``mosquitto`` is started on a free port for the demo (base topic ``egauge``, with
discovery); without either the demo runs Modbus and the status page only and says how to
install Mosquitto. The gateway runs in this process (the :class:`~gateway.runtime.app.App` of
``run``) with Modbus TCP on 127.0.0.1:5020 and the status page on 127.0.0.1:9120 (any free
port when those are taken), its state in a temporary directory. It prints what to run to see
the data and a one-line summary per meter, redrawn in place on a terminal and printed once
per interval otherwise. Ctrl-C (or ``--duration``) stops everything; the exit code is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from gateway.config import Config, parse_config
from gateway.core import MeterState
from gateway.errors import EXIT_CONFIG
from gateway.runtime.app import App
from gateway.simulator import SimMeter, SimServer, fleet
from gateway.support import configure_logging

LOOPBACK = "127.0.0.1"
MODBUS_PORT = 5020
HTTP_PORT = 9120
MAX_METERS = 100
INSTALL_HINT = "sudo apt-get install mosquitto mosquitto-clients"


@dataclass
class Broker:
    """The MQTT broker of the demo (``process`` when the demo started it)."""

    host: str
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def private(self) -> bool:
        return self.process is not None

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_or_free(preferred: int, host: str = LOOPBACK) -> int:
    """``preferred`` when nothing listens there, else a free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port on {host}")


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():  # Debian puts it there
        found = "/usr/sbin/mosquitto"
    return found


async def find_broker(workdir: Path, out: TextIO) -> Broker | None:
    """A broker on localhost:1883, else a Mosquitto started for the demo, else None."""
    if accepts("localhost", 1883):
        return Broker("localhost", 1883)
    binary = mosquitto_binary()
    if binary is None:
        print("MQTT is off: no broker on localhost:1883 and mosquitto is not installed "
              f"(install it with: {INSTALL_HINT}).", file=out, flush=True)
        return None
    port = port_or_free(0)
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n")
    with (workdir / "mosquitto.log").open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            binary, "-c", str(conf), stdout=subprocess.DEVNULL, stderr=log_file,
            start_new_session=True)  # its own session: Ctrl-C must not stop it before us
    broker = Broker(LOOPBACK, port, process)
    for _ in range(100):
        if accepts(LOOPBACK, port):
            return broker
        if process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    await broker.stop()
    print(f"MQTT is off: mosquitto did not start (see {workdir / 'mosquitto.log'}).",
          file=out, flush=True)
    return None


def demo_config(urls: list[str], password: str, broker: Broker | None, state_dir: Path,
                modbus_port: int, http_port: int) -> Config:
    """The gateway's configuration, checked like a file would be."""
    mqtt: dict[str, object] = {"enabled": False}
    if broker is not None:
        mqtt = {"host": broker.host, "port": broker.port,
                "base_topic": "egauge" if broker.private else "egauge-demo",
                "homeassistant": {"enabled": broker.private}}
    data = {
        "gateway": {"id": "demo", "state_dir": str(state_dir), "shutdown_timeout_s": 5},
        "meters": [{"id": f"sim{i + 1}", "url": url, "username": "owner", "password": password,
                    "poll_interval_s": 1, "modbus_unit_id": i + 1}
                   for i, url in enumerate(urls)],
        "mqtt": mqtt,
        "modbus": {"host": LOOPBACK, "port": modbus_port},
        "http": {"host": LOOPBACK, "port": http_port},
    }
    return parse_config(data, "<demo>", env={})


def guidance(app: App) -> Iterator[str]:
    """What to run to see the data."""
    cfg = app.config
    if app.mqtt is not None:
        topic = shlex.quote(f"{cfg.mqtt.base_topic}/#")
        hint = "" if shutil.which("mosquitto_sub") else f"   ({INSTALL_HINT})"
        yield f"  MQTT:    mosquitto_sub -h {cfg.mqtt.host} -p {cfg.mqtt.port} -t {topic} -v{hint}"
    if app.modbus is not None and cfg.meters:
        first = cfg.meters[0]
        points = app.modbus.layout(first.id).points
        rate = next((p for p in points if p.source == "rate" and p.type == "float32"), None)
        hint = "" if shutil.which("mbpoll") else "   (sudo apt-get install mbpoll)"
        base = f"mbpoll -m tcp -a {first.modbus_unit_id} -1 -p {app.modbus.port}"
        if rate is not None:
            yield (f"  Modbus:  {base} -t 3:float -B -r {rate.address + 1} -c 1 {LOOPBACK}"
                   f"   # {rate.register} (rate){hint}")
        else:
            yield f"  Modbus:  {base} -t 3 -r 1 -c 2 {LOOPBACK}   # online, age{hint}"
    if app.http is not None:
        yield f"  Status:  {app.http.url}/   (metrics: {app.http.url}/metrics)"


def summary_line(meter: str, state: MeterState, now: float, width: int) -> str:
    avail = state.availability
    shown = "waiting" if avail is None else "online " if avail.online else "OFFLINE"
    parts = [f"{meter:<6} {shown}"]
    reading = state.reading
    if reading is not None:
        parts.append(f"age {max(0.0, now - reading.ts):4.1f} s")
        parts.extend(f"{v.name} {v.rate:.1f} {v.unit}".rstrip()
                     for v in reading.registers if v.rate is not None)
    line = "  ".join(parts[:2]) + ("  " + " | ".join(parts[2:]) if parts[2:] else "")
    return line if len(line) <= width else line[: width - 1] + "…"


async def show(app: App, out: TextIO, interval_s: float = 1.0) -> None:
    """Print the guidance once the first meter was polled, then the summaries forever."""
    first = app.config.meters[0].id
    for _ in range(int(10 / 0.1)):
        if app.hub.meter(first).reading is not None:
            break
        await asyncio.sleep(0.1)
    print("Look at the data with:", *guidance(app), "Ctrl-C stops the demo.", sep="\n",
          file=out, flush=True)
    tty = out.isatty()
    drawn = 0
    while True:
        width = shutil.get_terminal_size().columns if tty else 160
        now = time.time()
        lines = [summary_line(m.id, app.hub.meter(m.id), now, width) for m in app.config.meters]
        if tty and drawn:
            out.write(f"\x1b[{drawn}F")
        out.write("".join(("\x1b[2K" if tty else "") + line + "\n" for line in lines))
        out.flush()
        drawn = len(lines)
        await asyncio.sleep(interval_s)


async def run_demo(count: int, duration: float | None, out: TextIO) -> int:
    password = secrets.token_urlsafe(12)
    meters: list[SimMeter] = fleet(count, password=password)
    with tempfile.TemporaryDirectory(prefix="egauge-demo-") as tmp:
        workdir = Path(tmp)
        broker = await find_broker(workdir, out)
        try:
            async with SimServer(meters, LOOPBACK, 0) as sim:
                config = demo_config(sim.urls, password, broker, workdir / "state",
                                     port_or_free(MODBUS_PORT), port_or_free(HTTP_PORT))
                print(f"egauge-gateway demo: {count} simulated meter(s) "
                      f"({', '.join(m.serial for m in meters)}), MQTT "
                      + (f"on {broker.host}:{broker.port}" if broker else "off"),
                      file=out, flush=True)
                return await _run_app(App(config), duration, out)
        finally:
            if broker is not None:
                await broker.stop()
            print("demo stopped", file=out, flush=True)


async def _run_app(app: App, duration: float | None, out: TextIO) -> int:
    async with asyncio.TaskGroup() as tg:
        running = tg.create_task(app.run(), name="demo-gateway")
        helpers = [tg.create_task(_after_start(app, running, out), name="demo-summary")]
        if duration is not None:
            helpers.append(tg.create_task(_stop_after(app, duration), name="demo-timer"))
        code = await running
        for task in helpers:
            task.cancel()
    return code


async def _after_start(app: App, running: asyncio.Task[int], out: TextIO) -> None:
    while not app.pollers or (app.modbus is not None and not app.modbus.listening):
        if running.done():
            return
        await asyncio.sleep(0.05)
    await show(app, out)


async def _stop_after(app: App, seconds: float) -> None:
    await asyncio.sleep(seconds)
    app.request_stop()


def main(args: argparse.Namespace) -> int:
    """``egauge-gateway demo [--meters N] [--duration S]``."""
    count = int(args.meters)
    if not 1 <= count <= MAX_METERS:
        print(f"--meters: must be 1-{MAX_METERS} (got {count})", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(getattr(args, "log_level", "warning"), "auto")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run_demo(count, args.duration, sys.stdout))
    return 0
