"""A hub sink for tests that records every update it receives (no tests here)."""

from __future__ import annotations

from gateway.model import Availability, Identity, Reading, RegisterInfo


class Recorder:
    """Implements the ``Sink`` protocol; ``events`` keeps every call in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.identities: list[Identity] = []
        self.registers: list[tuple[RegisterInfo, ...]] = []
        self.readings: list[Reading] = []
        self.availability: list[Availability] = []

    def on_identity(self, meter: str, identity: Identity) -> None:
        self.events.append(("identity", (meter, identity)))
        self.identities.append(identity)

    def on_registers(self, meter: str, registers: tuple[RegisterInfo, ...]) -> None:
        self.events.append(("registers", (meter, registers)))
        self.registers.append(registers)

    def on_reading(self, reading: Reading) -> None:
        self.events.append(("reading", reading))
        self.readings.append(reading)

    def on_availability(self, availability: Availability) -> None:
        self.events.append(("availability", availability))
        self.availability.append(availability)
