"""Write batches of notification delivery attempts to ClickHouse: one insert per non-empty call.

Same guarantees as `sinks.writer.BuildSinkWriter`: the writer is the last step before the
notifier commits the Kafka offsets of the attempts it logged, so it either raises
`SinkWriteError` naming the table or the rows are stored. Batching (size/time, per partition)
is the caller's job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clickhouse_connect.driver import Client

from sinks.table_insert import TableInserter, column_getters, to_columns
from sinks.notification_rows import (
    NOTIFICATION_DELIVERIES_TABLE,
    NOTIFICATION_DELIVERY_COLUMNS,
    NotificationDeliveryRow,
)

logger = logging.getLogger(__name__)

_DELIVERY_GETTERS = column_getters(NOTIFICATION_DELIVERY_COLUMNS)


class NotificationSinkWriter:
    """Inserts `NotificationDeliveryRow`s into `notification_deliveries`.

    Synchronous, like `BuildSinkWriter`: asyncio callers run `write` on the single ClickHouse
    thread (`sinks.gateway.ClickHouseGateway`). Retrying a failed `write` with the same rows is
    safe: the table is a ReplacingMergeTree read with FINAL, so attempts that did land the first
    time are not counted twice.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._tables = TableInserter(client, database)

    def write(self, deliveries: Sequence[NotificationDeliveryRow]) -> None:
        """Insert the batch in one insert; an empty batch inserts nothing.

        Raises SinkWriteError naming the table; nothing of the call may then be treated as
        written, so the caller retries the whole call (and commits nothing meanwhile).
        """
        if deliveries:
            self._tables.insert(
                NOTIFICATION_DELIVERIES_TABLE, NOTIFICATION_DELIVERY_COLUMNS, to_columns(deliveries, _DELIVERY_GETTERS)
            )
        logger.debug(
            "wrote %d notification delivery attempts to %s", len(deliveries), self._tables.database
        )

