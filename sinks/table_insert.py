"""Column-oriented inserts shared by every writer: cached insert contexts, clear errors.

Each writer (builds, audits, notification deliveries) knows its tables and rows; how a batch
of dataclass rows becomes one native insert, and how a failure is reported, lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from clickhouse_connect.driver.insert import InsertContext

from sinks.exceptions import SinkWriteError
from sinks.identifiers import checked_identifier


def column_getters(columns: Sequence[str]) -> tuple[attrgetter[Any], ...]:
    return tuple(attrgetter(name) for name in columns)


def to_columns(rows: Sequence[Any], getters: Sequence[attrgetter[Any]]) -> list[list[Any]]:
    """Column-oriented data: the native insert path encodes whole columns at once."""
    return [[getter(row) for row in rows] for getter in getters]


class TableInserter:
    """Inserts whole batches into tables of one database, one insert per call."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.database = checked_identifier(database)
        # Insert contexts carry the column types; building them once saves a DESCRIBE per call.
        self._contexts: dict[str, InsertContext] = {}

    def insert(self, table: str, column_names: Sequence[str], data: list[list[Any]]) -> None:
        """Raise SinkWriteError naming the table; the caller retries the batch as a whole."""
        qualified = f"{self.database}.{table}"
        try:
            context = self._contexts.get(table)
            if context is None:
                context = self._client.create_insert_context(
                    table=table,
                    column_names=list(column_names),
                    database=self.database,
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
