"""Async access to ClickHouse for the worker: one dedicated thread owns the client.

clickhouse-connect calls block, and the embedded chDB engine is owned by exactly one
process; funnelling every call (sink writes and API queries) through one thread
keeps the event loop free and the engine single-threaded. The worker's default,
`sinks.engine_gateway.EngineProcessGateway`, keeps this thread and ordering but runs
the calls in a child process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class ClickHouseGateway:
    """Runs `fn(client, database, ...)` calls on the single ClickHouse thread."""

    def __init__(self, connect: Callable[[], Client], database: str) -> None:
        self._connect = connect
        self.database = database
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._client: Client | None = None

    def _client_in_thread(self) -> Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _run(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        """Run one call; always on the ClickHouse thread."""
        return fn(self._client_in_thread(), self.database, *args, **kwargs)

    def _release(self) -> None:
        """Close what `_run` opened; on the ClickHouse thread."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def call_sync(self, fn: Callable[Concatenate[Client, str, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run on the ClickHouse thread and wait (for start-up work outside the event loop)."""
        return self._executor.submit(self._run, fn, args, kwargs).result()

    async def call(self, fn: Callable[Concatenate[Client, str, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run on the ClickHouse thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, fn, args, kwargs)

    def close(self) -> None:
        """Release the client (and with it the embedded engine's lock on its data path)."""
        self._executor.submit(self._release).result()
        self._executor.shutdown(wait=True)
