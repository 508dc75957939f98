"""Many simulated meters at once (benchmarks, demos)."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.simulator.meter import SimMeter
from gateway.simulator.registers import default_registers


def serial_for(i: int) -> str:
    return f"SIM{i + 1:04d}"


def fleet(count: int, *, username: str = "owner", password: str = "default",  # noqa: S107 -- the demo password
          token_lifetime_s: float = 600.0, nonce_lifetime_s: float = 60.0,
          clock: Callable[[], float] = time.time) -> list[SimMeter]:
    """``count`` meters SIM0001, SIM0002, ... with the same credentials; each meter's
    waves are phase-shifted so the meters do not read alike."""
    if count < 1:
        raise ValueError("a fleet needs at least one meter")
    return [SimMeter(serial_for(i), username, password, token_lifetime_s=token_lifetime_s,
                     nonce_lifetime_s=nonce_lifetime_s,
                     clock=clock, registers=default_registers(phase=0.37 * i))
            for i in range(count)]
