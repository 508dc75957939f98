"""``egauge-gateway probe URL``: log in to a meter, print its identity and every register.

The password comes from ``--password-file``, else ``EGAUGE_PASSWORD``, else a prompt (only
when stdin is a terminal). Failures print one line on stderr and exit with 3.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from gateway.errors import EXIT_OK, EXIT_STARTUP, ConfigError, GatewayError
from gateway.meter.client import WebApiClient
from gateway.model import Identity, LocalValue, Reading
from gateway.secret import Secret
from gateway.support import configure_logging

EXIT_FAILED = EXIT_STARTUP  # the meter cannot be reached or read


def main(args: argparse.Namespace) -> int:
    configure_logging("error", "console")
    try:
        username = args.username or os.environ.get("EGAUGE_USERNAME") or "owner"
        password = _password(args.password_file)
        verify: bool | str = False if args.insecure else (args.ca_file or True)
        client = WebApiClient(
            urlsplit(args.url).netloc or args.url, args.url, username, password,
            verify_tls=verify, timeout_s=args.timeout,
        )
        asyncio.run(_probe(client, with_local=args.local, out=sys.stdout))
    except GatewayError as exc:
        print(f"egauge-gateway probe: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _password(path: str | None) -> Secret:
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read the password file {path}: {exc.strerror}"]) from exc
        return Secret(text.rstrip("\r\n"))
    env = os.environ.get("EGAUGE_PASSWORD")
    if env is not None:
        return Secret(env)
    if sys.stdin is not None and sys.stdin.isatty():
        return Secret(getpass.getpass("eGauge password: "))
    raise ConfigError(["no password: give --password-file or set EGAUGE_PASSWORD"])


async def _probe(client: WebApiClient, *, with_local: bool, out: TextIO) -> None:
    async with client:
        identity = await client.identity()
        reading = await client.read()
        local = await client.local() if with_local else ()
    out.write(render(client.url, identity, reading, local))


def render(url: str, identity: Identity, reading: Reading, local: Sequence[LocalValue]) -> str:
    """The probe's report: identity lines, then one table row per register (and sensor)."""
    lines = [
        f"url       {url}",
        f"serial    {identity.serial}",
        f"model     {identity.model}",
        f"firmware  {identity.firmware}",
        f"hostname  {identity.hostname}",
    ]
    if identity.uptime_s is not None:
        lines.append(f"uptime    {identity.uptime_s:.0f} s")
    stamp = datetime.fromtimestamp(reading.ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines.append(f"meter ts  {reading.ts:.3f} ({stamp})")
    lines.append("")
    rows = [("register", "type", "rate", "unit", "cumulative", "unit")]
    rows += [
        (r.name, r.type_code, _number(r.rate), r.unit, _number(r.cumulative), r.cumulative_unit)
        for r in reading.registers
    ]
    lines += _table(rows, numeric=(2, 4))
    if local:
        lines.append("")
        sensors = [("sensor", "type", "normal", "mean", "freq", "unit")]
        sensors += [
            (v.name, v.type_code, _number(v.normal), _number(v.mean), _number(v.freq), v.unit)
            for v in local
        ]
        lines += _table(sensors, numeric=(2, 3, 4))
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"


def _table(rows: Sequence[tuple[str, ...]], numeric: tuple[int, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
