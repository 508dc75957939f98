"""``egauge-gateway run -c FILE``: one gateway process (:class:`~gateway.runtime.app.App`), or,
with ``gateway.workers`` above 1, a supervisor of worker processes
(:mod:`gateway.runtime.supervisor`); ``--worker J/N``, which only that supervisor gives, runs
worker J (:mod:`gateway.runtime.worker`)."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from gateway.config import load_or_report
from gateway.errors import EXIT_CONFIG, EXIT_STARTUP
from gateway.runtime.app import App
from gateway.runtime.supervisor import Supervisor, effective_workers
from gateway.runtime.worker import parse_slot, run_worker
from gateway.support import configure_logging

log = structlog.get_logger(__name__)


def main(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    slot_text = getattr(args, "worker", None)
    if slot_text is not None:
        slot = parse_slot(slot_text)
        if slot is None:
            log.error("startup_failed",
                      problems=[f"--worker: expected J/N with 0 <= J < N (got {slot_text!r})"])
            return EXIT_STARTUP
        return run_worker(config, slot)
    if effective_workers(config) > 1:
        return asyncio.run(Supervisor(config).run())
    return asyncio.run(App(config, owns_process=True).run())
