"""Write batches of audit rows to ClickHouse: one insert per non-empty table per call.

Same guarantees as `sinks.writer.BuildSinkWriter`: the writer is the last step before Kafka
offsets are committed, so it either raises `SinkWriteError` naming the table or the rows are
stored. Batching (size/time, per partition) is the caller's job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clickhouse_connect.driver import Client

from sinks.table_insert import TableInserter, column_getters, to_columns
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

logger = logging.getLogger(__name__)


class AuditSinkWriter:
    """Inserts audit events, states, repairs and alerts into their four tables.

    Synchronous, like `BuildSinkWriter`: asyncio callers run `write` on the single ClickHouse
    thread (`sinks.gateway.ClickHouseGateway`). Retrying a failed `write` with the same rows is
    safe: every table is a ReplacingMergeTree read with FINAL, so rows that did land the first
    time are not counted twice.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._tables = TableInserter(client, database)

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
                self._tables.insert(table, columns, to_columns(rows, column_getters(columns)))
        logger.debug(
            "wrote %d audit events, %d states, %d repairs and %d alerts to %s",
            len(events),
            len(states),
            len(repairs),
            len(alerts),
            self._tables.database,
        )

