"""Write batches of notification delivery attempts to ClickHouse: one insert per non-empty call.

Same guarantees as `sinks.writer.BuildSinkWriter`: the writer is the last step before the
notifier commits the Kafka offsets of the attempts it logged, so it either raises
`SinkWriteError` naming the table or the rows are stored. Batching (size/time, per partition)
is the caller's job.
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
from sinks.notification_rows import (
    NOTIFICATION_DELIVERIES_TABLE,
    NOTIFICATION_DELIVERY_COLUMNS,
    NotificationDeliveryRow,
)

logger = logging.getLogger(__name__)

_DELIVERY_GETTERS = tuple(attrgetter(name) for name in NOTIFICATION_DELIVERY_COLUMNS)


class NotificationSinkWriter:
    """Inserts `NotificationDeliveryRow`s into `notification_deliveries`.

    Synchronous, like `BuildSinkWriter`: asyncio callers run `write` on the single ClickHouse
    thread (`sinks.gateway.ClickHouseGateway`). Retrying a failed `write` with the same rows is
    safe: the table is a ReplacingMergeTree read with FINAL, so attempts that did land the first
    time are not counted twice.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = checked_identifier(database)
        # The insert context carries the column types; building it once saves a DESCRIBE per call.
        self._context: InsertContext | None = None

    def write(self, deliveries: Sequence[NotificationDeliveryRow]) -> None:
        """Insert the batch in one insert; an empty batch inserts nothing.

        Raises SinkWriteError naming the table; nothing of the call may then be treated as
        written, so the caller retries the whole call (and commits nothing meanwhile).
        """
        if deliveries:
            self._insert(_columns(deliveries))
        logger.debug(
            "wrote %d notification delivery attempts to %s", len(deliveries), self._database
        )

    def _insert(self, data: list[list[Any]]) -> None:
        qualified = f"{self._database}.{NOTIFICATION_DELIVERIES_TABLE}"
        try:
            context = self._context
            if context is None:
                context = self._client.create_insert_context(
                    table=NOTIFICATION_DELIVERIES_TABLE,
                    column_names=list(NOTIFICATION_DELIVERY_COLUMNS),
                    database=self._database,
                    column_oriented=True,
                )
                self._context = context
            context.data = data
            try:
                self._client.insert(context=context)
            finally:
                context.data = None
        except ClickHouseError as exc:
            # A schema change under a cached context would fail every later call; rebuild it.
            self._context = None
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


def _columns(rows: Sequence[NotificationDeliveryRow]) -> list[list[Any]]:
    """Column-oriented data: the native insert path encodes whole columns at once."""
    return [[getter(row) for row in rows] for getter in _DELIVERY_GETTERS]
