"""The one protocol every part of the gateway uses to talk to a meter.

:class:`MeterClient` is what the poller, the history backfill, the command actions, the
metrics and the runtime need of a meter; :class:`~gateway.meter.client.WebApiClient` is the
implementation over the eGauge WebAPI, and tests may pass anything else of this shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from gateway.model import Identity, LocalValue, Reading, RegisterInfo


@runtime_checkable
class MeterClient(Protocol):
    """One meter's WebAPI as the gateway uses it."""

    @property
    def logins(self) -> int:
        """Successful logins so far."""
        ...

    @property
    def login_failures(self) -> int:
        """Logins the meter refused so far."""
        ...

    @property
    def channel_renewals(self) -> int:
        """Connection pools replaced after a cancelled request so far."""
        ...

    async def identity(self) -> Identity: ...

    async def register_info(self) -> tuple[RegisterInfo, ...]: ...

    async def read(self, names: Sequence[str] | None = None) -> Reading: ...

    async def local(self) -> tuple[LocalValue, ...]: ...

    async def history(
        self, start: float, step: float, end: float, max_rows: int | None = None
    ) -> list[tuple[float, dict[str, int]]]: ...

    async def get_config(self, path: str) -> tuple[Any, str | None]: ...

    async def set_config(
        self, path: str, value: Any, *, etag: str | None, merge: bool = False
    ) -> None: ...

    async def cmd(self, name: str, body: Any = None) -> Any: ...

    async def ctrl_devices(
        self, attrs: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...

    async def ctrl_call(
        self, attrs: Mapping[str, Any], method: str, args: Sequence[Any]
    ) -> int: ...

    async def ctrl_result(self, tid: int) -> Any: ...

    async def fetch(self, method: str, path: str, query: str = "", body: Any = None) -> Any:
        """Any other request (``/capture``, ``/ctid``, ``/log``, ``/lua``, ...): its decoded
        JSON reply (None ``body``: none sent)."""
        ...

    async def aclose(self) -> None:
        """Log out and release the connection."""
        ...
