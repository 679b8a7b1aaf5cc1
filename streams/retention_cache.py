"""The context table's retention, read from ClickHouse and kept for a short while.

Eligibility must follow an `ALTER TABLE ... MODIFY TTL` without a restart, and it must not
query `system.tables` on every request. A cached value older than `max_age` is read again, so a
changed TTL takes effect within `max_age` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sinks.context_rows import BUILD_CONTEXT_TABLE
from sinks.gateway import ClickHouseGateway
from sinks.retention import TableRetention, read_retention
from streams.retry_eligibility import RetentionWindow


def window_of(retention: TableRetention, read_at: datetime) -> RetentionWindow:
    return RetentionWindow(
        ttl=retention.ttl,
        ttl_expression=retention.ttl_expression,
        oldest_partition_start=retention.oldest_partition_start,
        read_at=read_at,
    )


class RetentionCache:
    def __init__(
        self,
        gateway: ClickHouseGateway,
        max_age_seconds: float,
        table: str = BUILD_CONTEXT_TABLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gateway = gateway
        self._max_age = max_age_seconds
        self._table = table
        self._clock = clock
        self._cached: tuple[float, RetentionWindow, TableRetention] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> tuple[RetentionWindow, TableRetention]:
        """The current window (and the raw metadata behind it); raises if ClickHouse fails."""
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._max_age:
                return self._cached[1], self._cached[2]
            retention: TableRetention = await self._gateway.call(read_retention, self._table)
            window = window_of(retention, datetime.now(UTC))
            self._cached = (now, window, retention)
            return window, retention
