"""Write batches of build rows to ClickHouse: one insert per table per call.

The writer is the last step before offsets are committed, so it either raises or the rows are
stored; it never swallows an error. Batching (size/time, per partition) is the caller's job;
ClickHouse wants 10k-100k rows per insert and about one insert per second per table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from clickhouse_connect.driver.insert import InsertContext

from sinks.exceptions import SinkWriteError
from sinks.identifiers import checked_identifier
from sinks.rows import (
    EVENT_INSERT_COLUMNS,
    EVENTS_TABLE,
    RESULT_COLUMNS,
    RESULTS_TABLE,
    BuildEventRow,
    BuildResultRow,
)

logger = logging.getLogger(__name__)

_EVENT_GETTERS = tuple(attrgetter(name) for name in EVENT_INSERT_COLUMNS)
_RESULT_GETTERS = tuple(attrgetter(name) for name in RESULT_COLUMNS)


class BuildSinkWriter:
    """Inserts `BuildEventRow`s into `build_events` and `BuildResultRow`s into `build_results`.

    Synchronous on purpose: clickhouse-connect calls block, and the embedded engine (chDB)
    serialises calls per client anyway, so asyncio callers run `write` in a single-thread
    executor and keep one writer (and one client) per process.

    Retrying a failed `write` with the same rows is safe: both tables are ReplacingMergeTree
    read with FINAL, so rows that did land the first time are not counted twice.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = checked_identifier(database)
        # Insert contexts carry the column types; building them once saves a DESCRIBE per call.
        self._contexts: dict[str, InsertContext] = {}

    def write(self, events: Sequence[BuildEventRow], results: Sequence[BuildResultRow]) -> None:
        """Insert both batches (events first); empty batches are skipped.

        Raises SinkWriteError naming the table whose insert failed. If the results insert
        fails, the events are already stored: the caller retries the whole call.
        """
        if events:
            self._insert(EVENTS_TABLE, EVENT_INSERT_COLUMNS, _columns(events, _EVENT_GETTERS))
        if results:
            self._insert(RESULTS_TABLE, RESULT_COLUMNS, _columns(results, _RESULT_GETTERS))
        logger.debug(
            "wrote %d build events and %d build results to %s",
            len(events),
            len(results),
            self._database,
        )

    def _insert(self, table: str, column_names: Sequence[str], data: list[list[Any]]) -> None:
        qualified = f"{self._database}.{table}"
        try:
            context = self._contexts.get(table)
            if context is None:
                context = self._client.create_insert_context(
                    table=table,
                    column_names=list(column_names),
                    database=self._database,
                    column_oriented=True,
                )
                self._contexts[table] = context
            context.data = data
            try:
                self._client.insert(context=context)
            finally:
                context.data = None
        except ClickHouseError as exc:
            # A schema change under a cached context would fail every later call; rebuild it.
            self._contexts.pop(table, None)
            raise SinkWriteError(
                f"insert of {len(data[0]) if data else 0} rows into {qualified} failed: {exc}. "
                "Check that migrations ran and ClickHouse is reachable; the batch was not "
                "committed and may be retried as a whole",
                table=qualified,
            ) from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise SinkWriteError(
                f"rows for {qualified} could not be encoded: {exc}. A row value does not fit "
                "its column type",
                table=qualified,
            ) from exc


def _columns(rows: Sequence[Any], getters: Sequence[attrgetter[Any]]) -> list[list[Any]]:
    """Column-oriented data: the native insert path encodes whole columns at once."""
    return [[getter(row) for row in rows] for getter in getters]
