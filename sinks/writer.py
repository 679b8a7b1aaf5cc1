"""Write batches of build rows to ClickHouse: one insert per table per call.

The writer is the last step before offsets are committed, so it either raises or the rows are
stored; it never swallows an error. Batching (size/time, per partition) is the caller's job;
ClickHouse wants 10k-100k rows per insert and about one insert per second per table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clickhouse_connect.driver import Client

from sinks.context_writer import BuildContextWriter
from sinks.context_rows import BuildContextRow
from sinks.table_insert import TableInserter, column_getters, to_columns
from sinks.rows import (
    EVENT_INSERT_COLUMNS,
    EVENTS_TABLE,
    RESULT_COLUMNS,
    RESULTS_TABLE,
    BuildEventRow,
    BuildResultRow,
)

logger = logging.getLogger(__name__)

_EVENT_GETTERS = column_getters(EVENT_INSERT_COLUMNS)
_RESULT_GETTERS = column_getters(RESULT_COLUMNS)


class BuildSinkWriter:
    """Inserts `BuildEventRow`s into `build_events` and `BuildResultRow`s into `build_results`.

    Synchronous on purpose: clickhouse-connect calls block, and the embedded engine (chDB)
    serialises calls per client anyway, so asyncio callers run `write` in a single-thread
    executor and keep one writer (and one client) per process.

    Retrying a failed `write` with the same rows is safe: both tables are ReplacingMergeTree
    read with FINAL, so rows that did land the first time are not counted twice.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._tables = TableInserter(client, database)

    def write(self, events: Sequence[BuildEventRow], results: Sequence[BuildResultRow]) -> None:
        """Insert both batches (events first); empty batches are skipped.

        Raises SinkWriteError naming the table whose insert failed. If the results insert
        fails, the events are already stored: the caller retries the whole call.
        """
        if events:
            self._tables.insert(EVENTS_TABLE, EVENT_INSERT_COLUMNS, to_columns(events, _EVENT_GETTERS))
        if results:
            self._tables.insert(RESULTS_TABLE, RESULT_COLUMNS, to_columns(results, _RESULT_GETTERS))
        logger.debug(
            "wrote %d build events and %d build results to %s",
            len(events),
            len(results),
            self._tables.database,
        )



def write_build_changes(
    events: Sequence[BuildEventRow],
    results: Sequence[BuildResultRow],
    contexts: Sequence[BuildContextRow],
    client: Client,
    database: str,
) -> None:
    """The build-status sink's whole batch: events, then results, then retry contexts."""
    BuildSinkWriter(client, database).write(events, results)
    BuildContextWriter(client, database).write(contexts)
