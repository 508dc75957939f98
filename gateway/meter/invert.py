"""Registers read with the opposite sign: ``meters[].invert`` (a CT mounted backwards, a solar
array whose register reads negative while it produces).

:class:`InvertedRegisters` wraps a meter client: the rate, the cumulative value and the raw
accumulator of every named register -- in live readings and in the rows of the meter's
database alike -- come back negated, so that every output (and the import/export counters
built from them) sees the register as if the CT had been mounted the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from gateway.meter.protocol import MeterClient
from gateway.model import Identity, LocalValue, Reading, RegisterInfo, RegisterValue


def _negated(value: RegisterValue) -> RegisterValue:
    return replace(
        value,
        rate=None if value.rate is None else -value.rate,
        cumulative=None if value.cumulative is None else -value.cumulative,
        raw=None if value.raw is None else -value.raw,
    )


class InvertedRegisters:
    """A :class:`MeterClient` whose registers ``names`` read with the opposite sign."""

    def __init__(self, client: MeterClient, names: Iterable[str]) -> None:
        self.client = client
        self.names = frozenset(names)

    def __repr__(self) -> str:
        return f"InvertedRegisters({self.client!r}, {sorted(self.names)!r})"

    @property
    def logins(self) -> int:
        return self.client.logins

    @property
    def login_failures(self) -> int:
        return self.client.login_failures

    @property
    def channel_renewals(self) -> int:
        return self.client.channel_renewals

    async def identity(self) -> Identity:
        return await self.client.identity()

    async def register_info(self) -> tuple[RegisterInfo, ...]:
        return await self.client.register_info()

    async def read(self, names: Sequence[str] | None = None) -> Reading:
        reading = await self.client.read(names)
        inverted = self.names
        if not any(v.name in inverted for v in reading.registers):
            return reading
        return replace(reading, registers=tuple(
            _negated(v) if v.name in inverted else v for v in reading.registers))

    async def local(self) -> tuple[LocalValue, ...]:
        return await self.client.local()

    async def history(
        self, start: float, step: float, end: float, max_rows: int | None = None
    ) -> list[tuple[float, dict[str, int]]]:
        rows = await self.client.history(start, step, end, max_rows)
        inverted = self.names
        return [(ts, {n: -raw if n in inverted else raw for n, raw in raws.items()})
                for ts, raws in rows]

    async def get_config(self, path: str) -> tuple[Any, str | None]:
        return await self.client.get_config(path)

    async def set_config(
        self, path: str, value: Any, *, etag: str | None, merge: bool = False
    ) -> None:
        await self.client.set_config(path, value, etag=etag, merge=merge)

    async def cmd(self, name: str, body: Any = None) -> Any:
        return await self.client.cmd(name, body)

    async def ctrl_devices(
        self, attrs: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return await self.client.ctrl_devices(attrs)

    async def ctrl_call(
        self, attrs: Mapping[str, Any], method: str, args: Sequence[Any]
    ) -> int:
        return await self.client.ctrl_call(attrs, method, args)

    async def ctrl_result(self, tid: int) -> Any:
        return await self.client.ctrl_result(tid)

    async def fetch(self, method: str, path: str, query: str = "", body: Any = None) -> Any:
        """Passed through as the meter answers it (``api/get`` and the other actions show
        the meter's own view)."""
        return await self.client.fetch(method, path, query, body)

    async def aclose(self) -> None:
        await self.client.aclose()


def inverted(client: MeterClient, names: Iterable[str]) -> MeterClient:
    """``client`` with ``names`` inverted (``client`` itself when there are none)."""
    chosen = frozenset(names)
    return InvertedRegisters(client, chosen) if chosen else client
