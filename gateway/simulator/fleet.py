"""Many simulated meters at once (benchmarks, demos)."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.simulator.meter import SimMeter


def serial_for(i: int) -> str:
    return f"SIM{i + 1:04d}"


def fleet(count: int, *, username: str = "owner", password: str = "default",  # noqa: S107 -- the demo password
          token_lifetime_s: float = 600.0, nonce_lifetime_s: float = 60.0,
          clock: Callable[[], float] = time.time, reactive_code: str = "PQ",
          day_s: int = 86400) -> list[SimMeter]:
    """``count`` meters SIM0001, SIM0002, ... with the same credentials, each the default
    site (``reactive_code``, ``day_s`` as :class:`SimMeter` takes them) with its appliance
    cycles phase-shifted so the meters do not read alike."""
    if count < 1:
        raise ValueError("a fleet needs at least one meter")
    return [SimMeter(serial_for(i), username, password, token_lifetime_s=token_lifetime_s,
                     nonce_lifetime_s=nonce_lifetime_s, clock=clock,
                     reactive_code=reactive_code, day_s=day_s, phase=0.37 * i)
            for i in range(count)]
