"""Modbus TCP output benchmark: 125-register reads, requests/s and latency, against a bare
pymodbus server serving static data in the same run, and through the relay a gateway with
worker processes puts in front of its workers' servers; plus the cost of applying readings.

    python bench/modbus_bench.py [--duration 5] [--clients 1,10] [--units 500]
                                 [--registers 20] [--write bench/MODBUS.md]

Each server runs in its own process (``--serve ours|pymodbus|relay``, started by the
benchmark; the relay in a process of its own in front of an ``ours`` server, as a
supervisor in front of a worker); the load comes from one asyncio process with raw MBAP
frames (one request in flight per connection), so neither side's client library is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shlex
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.config.types import MeterConfig, ModbusConfig
from gateway.modbus import ModbusOutput, ModbusRelay
from gateway.model import Reading, RegisterValue
from gateway.secret import Secret

READ_COUNT = 125


def synthetic_reading(meter: str, names: list[str], t: float) -> Reading:
    return Reading(meter, t, tuple(
        RegisterValue(n, "P", "W", 1000.0 * math.sin(t + i), 12345.678 + t / 3600 + i, "kWh",
                      int(t * 1000) + i) for i, n in enumerate(names)))


def build_output(units: int, state_dir: str) -> ModbusOutput:
    meters = [MeterConfig(id=f"m{u}", url="http://127.0.0.1:9", username="u",
                          password=Secret("p"), modbus_unit_id=u) for u in range(1, units + 1)]
    return ModbusOutput(ModbusConfig(host="127.0.0.1", port=0), meters, state_dir)


def quiet() -> None:
    """Only warnings and errors, on stderr: stdout carries the ready line."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    logging.getLogger("pymodbus").setLevel(logging.ERROR)


def update_cost(units: int, registers: int, rounds: int = 10) -> tuple[float, float]:
    """Microseconds to apply one reading (``registers`` registers) to its unit's image, and
    to encode it at the first read after it (the image encodes lazily)."""
    names = [f"Register {i}" for i in range(registers)]
    with tempfile.TemporaryDirectory() as state:
        output = build_output(units, state)
        t = time.time()
        for u in range(1, units + 1):  # first sight pins the names (not timed)
            output.on_reading(synthetic_reading(f"m{u}", names, t))
        readings = [[synthetic_reading(f"m{u}", names, t + r) for u in range(1, units + 1)]
                    for r in range(rounds)]
        handle = output._server.handle
        read = struct.pack(">BHH", 3, 0, 8)
        apply_s = encode_s = 0.0
        for batch in readings:
            start = time.perf_counter()
            for reading in batch:
                output.on_reading(reading)
            middle = time.perf_counter()
            for u in range(1, units + 1):
                handle(u, read)
            apply_s += middle - start
            encode_s += time.perf_counter() - middle
    return apply_s / (units * rounds) * 1e6, encode_s / (units * rounds) * 1e6


async def serve_ours(units: int, registers: int) -> None:
    names = [f"Register {i}" for i in range(registers)]
    with tempfile.TemporaryDirectory() as state:
        output = build_output(units, state)
        await output.start()
        print(f"ready {output.port} 100", flush=True)  # the first auto slot
        step = max(1, units // 100)
        while True:  # every meter updates once a second, spread out as pollers are
            for first in range(1, units + 1, step):
                t = time.time()
                for u in range(first, min(first + step, units + 1)):
                    output.on_reading(synthetic_reading(f"m{u}", names, t))
                await asyncio.sleep(step / units)


async def serve_relay(upstream: int, address: int) -> None:
    relay = ModbusRelay("127.0.0.1", 0, lambda _unit: ("127.0.0.1", upstream))
    await relay.start()
    print(f"ready {relay.port} {address}", flush=True)
    await asyncio.Event().wait()


async def serve_pymodbus() -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    device = SimDevice(id=1, simdata=[SimData(address=0, count=200, values=0x1234,
                                              datatype=DataType.REGISTERS)])
    server = ModbusTcpServer(device, address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    listener = server.transport
    assert isinstance(listener, asyncio.Server)
    port = listener.sockets[0].getsockname()[1]
    print(f"ready {port} 0", flush=True)
    await asyncio.Event().wait()


@dataclass
class Result:
    server: str
    clients: int
    requests: int
    seconds: float
    latencies: list[float]

    def row(self) -> str:
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] * 1e3
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        return (f"| {self.server} | {self.clients} | {self.requests / self.seconds:,.0f} | "
                f"{p50:.3f} | {p99:.3f} |")


async def load(port: int, address: int, clients: int, duration: float) -> tuple[int, list[float]]:
    request = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, address, READ_COUNT)
    expected = 9 + 2 * READ_COUNT
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    loop = asyncio.get_running_loop()

    async def one() -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while (now := time.perf_counter()) < deadline:
                await loop.sock_sendall(sock, request)
                reply = b""
                while len(reply) < expected:
                    chunk = await loop.sock_recv(sock, expected - len(reply))
                    if not chunk:
                        raise RuntimeError("server closed the connection")
                    reply += chunk
                latencies.append(time.perf_counter() - now)
                if reply[7] != 3:
                    raise RuntimeError(f"exception reply {reply.hex()}")
        finally:
            sock.close()

    async with asyncio.TaskGroup() as tg:
        for i in range(clients):
            tg.create_task(one(), name=f"bench-client-{i}")
    return len(latencies), latencies


def run_server(kind: str, units: int, registers: int, upstream: tuple[int, int] | None = None
               ) -> tuple[subprocess.Popen[str], int, int]:
    extra = ["--upstream", f"{upstream[0]}:{upstream[1]}"] if upstream else []
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--units", str(units),
         "--registers", str(registers), *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        proc.kill()
        raise RuntimeError(f"{kind} server did not start")
    return proc, int(line[1]), int(line[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--clients", default="1,10", help="concurrent connections to try")
    parser.add_argument("--units", type=int, default=500, help="meters (unit ids) served")
    parser.add_argument("--registers", type=int, default=20, help="registers per meter")
    parser.add_argument("--write", default=None, help="write the results to this markdown file")
    parser.add_argument("--serve", choices=["ours", "pymodbus", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet()
    if args.serve == "ours":
        asyncio.run(serve_ours(args.units, args.registers))
        return 0
    if args.serve == "pymodbus":
        asyncio.run(serve_pymodbus())
        return 0
    if args.serve == "relay":
        port, _, address = args.upstream.partition(":")
        asyncio.run(serve_relay(int(port), int(address)))
        return 0

    registers = max(args.registers, math.ceil(READ_COUNT / 6))  # 125 registers must be mapped
    cost = update_cost(args.units, registers)
    results = []
    for kind in ("ours", "relay", "pymodbus"):
        procs = []
        try:
            if kind == "relay":  # the relay in front of a server of ours, as with workers
                upstream, up_port, up_address = run_server("ours", args.units, registers)
                procs.append(upstream)
                proc, port, address = run_server("relay", args.units, registers,
                                                 (up_port, up_address))
            else:
                proc, port, address = run_server(kind, args.units, registers)
            procs.append(proc)
            for clients in (int(c) for c in args.clients.split(",")):
                asyncio.run(load(port, address, clients, 0.5))  # warm up
                count, latencies = asyncio.run(load(port, address, clients, args.duration))
                name = "ours via the relay" if kind == "relay" else kind
                results.append(Result(name, clients, count, args.duration, latencies))
                print(results[-1].row(), flush=True)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    report = render(args, registers, cost, results)
    print(report)
    if args.write:
        write_section(Path(args.write), report)
    return 0


def render(args: argparse.Namespace, registers: int, cost: tuple[float, float],
           results: list[Result]) -> str:
    import pymodbus

    command = "python bench/modbus_bench.py " + shlex.join(
        a for a in sys.argv[1:] if a != "--write" and a != args.write)
    lines = [
        f"Command: `{command.strip()}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, pymodbus {pymodbus.__version__}; "
        f"{time.strftime('%Y-%m-%d')}",
        "",
        f"Reads of {READ_COUNT} registers (FC03), one request in flight per connection, "
        f"{args.duration:g} s each. `ours`: the gateway's server with {args.units} units of "
        f"{registers} registers, every unit updated once a second meanwhile. `ours via the "
        "relay`: the same, with the relay of `gateway.workers` in front of it, in a process of "
        "its own (the extra hop a request takes when the gateway runs worker processes). "
        "`pymodbus`: a bare pymodbus ModbusTcpServer serving 200 static registers.",
        "",
        "| server | connections | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *(r.row() for r in results),
        "",
        f"Applying one reading of {registers} registers to a unit image: {cost[0]:.1f} µs; "
        f"encoding it at the first read after it: {cost[1]:.1f} µs (the image encodes when it is "
        f"read: {args.units} meters at 1 Hz cost {cost[0] * args.units / 1e4:.2f} % of one core "
        f"unread, {(cost[0] + cost[1]) * args.units / 1e4:.2f} % with every reading read).",
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, report: str) -> None:
    marker = "## Results"
    head = path.read_text(encoding="utf-8").split(marker)[0] if path.exists() else (
        "# Modbus output benchmark\n\n`bench/modbus_bench.py` measures the Modbus TCP output.\n\n")
    path.write_text(head + marker + "\n\n" + report, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
