"""Write batches of audit rows to ClickHouse: one insert per non-empty table per call.

Same guarantees as `sinks.writer.BuildSinkWriter`: the writer is the last step before Kafka
offsets are committed, so it either raises `SinkWriteError` naming the table or the rows are
stored. Batching (size/time, per partition) is the caller's job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from clickhouse_connect.driver.insert import InsertContext

from sinks.audit_rows import (
    AUDIT_ALERT_COLUMNS,
    AUDIT_ALERTS_TABLE,
    AUDIT_EVENT_INSERT_COLUMNS,
    AUDIT_EVENTS_TABLE,
    AUDIT_REPAIR_COLUMNS,
    AUDIT_REPAIRS_TABLE,
    AUDIT_STATE_COLUMNS,
    AUDIT_STATE_TABLE,
    AuditAlertRow,
    AuditEventRow,
    AuditRepairRow,
    AuditStateRow,
)
from sinks.exceptions import SinkWriteError
from sinks.identifiers import checked_identifier

logger = logging.getLogger(__name__)


class AuditSinkWriter:
    """Inserts audit events, states, repairs and alerts into their four tables.

    Synchronous, like `BuildSinkWriter`: asyncio callers run `write` on the single ClickHouse
    thread (`sinks.gateway.ClickHouseGateway`). Retrying a failed `write` with the same rows is
    safe: every table is a ReplacingMergeTree read with FINAL, so rows that did land the first
    time are not counted twice.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = checked_identifier(database)
        # Insert contexts carry the column types; building them once saves a DESCRIBE per call.
        self._contexts: dict[str, InsertContext] = {}

    def write(
        self,
        *,
        events: Sequence[AuditEventRow] = (),
        states: Sequence[AuditStateRow] = (),
        repairs: Sequence[AuditRepairRow] = (),
        alerts: Sequence[AuditAlertRow] = (),
    ) -> None:
        """Insert the non-empty batches in the order events, states, repairs, alerts.

        Raises SinkWriteError naming the table whose insert failed; the tables before it are
        already written, so the caller retries the whole call (and commits nothing meanwhile).
        """
        for table, columns, rows in (
            (AUDIT_EVENTS_TABLE, AUDIT_EVENT_INSERT_COLUMNS, events),
            (AUDIT_STATE_TABLE, AUDIT_STATE_COLUMNS, states),
            (AUDIT_REPAIRS_TABLE, AUDIT_REPAIR_COLUMNS, repairs),
            (AUDIT_ALERTS_TABLE, AUDIT_ALERT_COLUMNS, alerts),
        ):
            if rows:
                self._insert(table, columns, _columns(rows, columns))
        logger.debug(
            "wrote %d audit events, %d states, %d repairs and %d alerts to %s",
            len(events),
            len(states),
            len(repairs),
            len(alerts),
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


def _columns(rows: Sequence[Any], column_names: Sequence[str]) -> list[list[Any]]:
    """Column-oriented data: the native insert path encodes whole columns at once."""
    return [[getter(row) for row in rows] for getter in map(attrgetter, column_names)]
