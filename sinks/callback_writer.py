"""Write callback subscription versions and delivery attempts to ClickHouse.

Same guarantees as `sinks.writer.BuildSinkWriter`: each call is one insert, and it either raises
`SinkWriteError` naming the table or the rows are stored. Re-running a failed call with the same
rows is safe: both tables are ReplacingMergeTrees read with FINAL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clickhouse_connect.driver import Client

from sinks.callback_rows import (
    CALLBACK_DELIVERIES_TABLE,
    CALLBACK_DELIVERY_COLUMNS,
    CALLBACK_SUBSCRIPTION_COLUMNS,
    CALLBACK_SUBSCRIPTIONS_TABLE,
    CallbackDeliveryRow,
    CallbackSubscriptionRow,
)
from sinks.table_insert import TableInserter, column_getters, to_columns

logger = logging.getLogger(__name__)

_SUBSCRIPTION_GETTERS = column_getters(CALLBACK_SUBSCRIPTION_COLUMNS)
_DELIVERY_GETTERS = column_getters(CALLBACK_DELIVERY_COLUMNS)


class CallbackWriter:
    """Synchronous: asyncio callers run it on the ClickHouse thread (`sinks.gateway`)."""

    def __init__(self, client: Client, database: str) -> None:
        self._tables = TableInserter(client, database)

    def write_subscriptions(self, versions: Sequence[CallbackSubscriptionRow]) -> None:
        if versions:
            data = to_columns(versions, _SUBSCRIPTION_GETTERS)
            data[CALLBACK_SUBSCRIPTION_COLUMNS.index("events")] = [list(v.events) for v in versions]
            self._tables.insert(CALLBACK_SUBSCRIPTIONS_TABLE, CALLBACK_SUBSCRIPTION_COLUMNS, data)

    def write_deliveries(self, attempts: Sequence[CallbackDeliveryRow]) -> None:
        if attempts:
            self._tables.insert(CALLBACK_DELIVERIES_TABLE, CALLBACK_DELIVERY_COLUMNS, to_columns(attempts, _DELIVERY_GETTERS))
        logger.debug("wrote %d callback delivery attempts to %s", len(attempts), self._tables.database)


def write_subscription(client: Client, database: str, version: CallbackSubscriptionRow) -> None:
    """Gateway-callable: store one new version of a callback subscription."""
    CallbackWriter(client, database).write_subscriptions([version])


def write_deliveries(client: Client, database: str, attempts: Sequence[CallbackDeliveryRow]) -> None:
    """Gateway-callable: store delivery attempts."""
    CallbackWriter(client, database).write_deliveries(attempts)
