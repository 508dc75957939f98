"""What the Modbus server and the Modbus relay share: a listening socket, the connections it
accepted and the tasks they started, closed together in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import structlog

from gateway.errors import GatewayError

log = structlog.get_logger(__name__)


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


class Listener(Generic[C]):
    """Listens on ``host:port`` (port 0: any free port, see :attr:`port`) once
    :meth:`listen` ran: the base of the server and the relay."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.connections: set[C] = set()  # kept by the owner: added, discarded
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (once listening), else the one asked for."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def listen(self, factory: Callable[[], asyncio.Protocol], **fields: Any) -> None:
        """Listen, each accepted connection served by ``factory()``; ``fields`` go into the
        ``modbus_listening`` event."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(factory, self.host, self._port,
                                                    reuse_address=True)
        except OSError as exc:
            raise GatewayError(f"modbus: cannot listen on {self.host}:{self._port}: "
                               f"{exc.strerror or exc}") from exc
        log.info("modbus_listening", host=self.host, port=self.port, **fields)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task of the listener (cancelled by :meth:`shut`)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shut(self) -> bool:
        """Stop listening, close every connection, cancel and await the tasks; False when
        it was not listening."""
        server, self._server = self._server, None
        if server is None:
            return False
        server.close()
        for conn in list(self.connections):
            conn.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()
        return True
