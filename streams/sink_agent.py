"""Writing batches to ClickHouse until it accepts them, shared by every sink.

A batch is flushed when it reaches `batch_size` or after `flush_seconds`, and its offsets are
acknowledged only after ClickHouse accepted the whole batch. A failed write is retried (with
capped exponential backoff) and never acknowledged, so a crash or an outage re-delivers the
batch; the tables' versioned keys make the re-write harmless. `write_changes` stores build-status
change sets (`streams.sink_consumer`); `row_sink` is the Faust agent body of the one-table sinks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from functools import partial
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from faust.types import StreamT

from schemas import BuildStatusChange
from sinks.bound_writes import rows_write
from sinks.gateway import ClickHouseGateway
from sinks.writer import write_build_changes
from streams import metrics
from streams.dead_letter import DeadLetterPublisher
from streams.failed_batches import stop_worker_on_failure
from streams.sink_rows import context_row, event_row, latest_per_build, result_row

log = logging.getLogger(__name__)

@dataclass
class SinkHealth:
    """What readiness reports about the sink; updated after every write attempt."""

    healthy: bool = True
    last_error: str | None = None
    last_flush_at: float | None = None
    rows_written: int = 0
    consecutive_failures: int = 0
    failing_since: float | None = field(default=None, repr=False)



async def write_changes(
    gateway: ClickHouseGateway, health: SinkHealth, retry_max_seconds: float, changes: list[BuildStatusChange]
) -> None:
    """Every change as a `build_events` row; each build's newest state as its result and context."""
    event_rows = [event_row(change) for change in changes]
    latest = latest_per_build(changes)
    result_rows = [result_row(change) for change in latest]
    context_rows = [context_row(change) for change in latest]

    await write_until_accepted(
        gateway, health, retry_max_seconds, partial(write_build_changes, event_rows, result_rows, context_rows),
        rows={"build_events": len(event_rows), "build_results": len(result_rows), "build_context": len(context_rows)},
    )


async def write_until_accepted(
    gateway: ClickHouseGateway,
    health: SinkHealth,
    retry_max_seconds: float,
    write: Callable[[Any, str], None],
    rows: dict[str, int],
) -> None:
    """Block the calling agent (and so its acks) until ClickHouse has the batch.

    `write(client, database)` must be idempotent (versioned or keyed rows): a batch is
    re-written after any failure. `rows` counts the batch per table, for the metrics.
    """
    delay = 0.5
    while True:
        started = time.monotonic()
        try:
            await gateway.call(write)
        except Exception as exc:  # any failure: keep the batch, keep retrying, stay unacked
            metrics.SINK_FAILURES.inc()
            metrics.SINK_HEALTHY.set(0)
            health.healthy = False
            health.last_error = str(exc)
            health.consecutive_failures += 1
            health.failing_since = health.failing_since or time.time()
            log.error(
                "ClickHouse write of %s failed (attempt %d), retrying in %.1fs: %s",
                rows, health.consecutive_failures, delay, exc,
            )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, retry_max_seconds)
            continue
        metrics.SINK_FLUSH_SECONDS.observe(time.monotonic() - started)
        for table, count in rows.items():
            metrics.SINK_ROWS.labels(table).inc(count)
        metrics.SINK_HEALTHY.set(1)
        if not health.healthy:
            log.info("ClickHouse writes recovered after %d failures", health.consecutive_failures)
        health.healthy = True
        health.last_error = None
        health.consecutive_failures = 0
        health.failing_since = None
        health.last_flush_at = time.time()
        health.rows_written += sum(rows.values())
        return


def row_sink(
    model: type[Any],
    to_row: Callable[[Any], Any],
    write: Callable[[Any, str, list[Any]], None],
    table: str,
    *,
    dead_letters: DeadLetterPublisher,
    gateway: ClickHouseGateway,
    health: SinkHealth,
    batch_size: int,
    flush_seconds: float,
    retry_max_seconds: float,
) -> Callable[[StreamT[Any]], Awaitable[None]]:
    """An agent body that stores one record type as rows of one table, one insert per batch.

    Undecodable records are dead-lettered (their deliveries awaited before the batch is acked);
    the rows are written until ClickHouse accepts them (`write` must be idempotent), and only
    then does the loop resume, which acks the batch.
    """

    async def store(stream: StreamT[Any]) -> None:
        async for events in cast("faust.Stream[Any]", stream).take_events(batch_size, within=flush_seconds):
            async with stop_worker_on_failure(stream, events):
                deliveries: list[Awaitable[Any]] = []
                rows: list[Any] = []
                for event in events:
                    record = await dead_letters.decode_or_reject(event, model, deliveries)
                    if record is not None:
                        rows.append(to_row(record))
                await asyncio.gather(*deliveries)
                if rows:
                    await write_until_accepted(
                        gateway, health, retry_max_seconds,
                        rows_write(write, rows), rows={table: len(rows)},
                    )

    return store
