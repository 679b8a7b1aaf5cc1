"""Write build retry contexts and retry decisions to ClickHouse: one insert per non-empty call.

Same guarantees as `sinks.writer.BuildSinkWriter`: the writer either raises `SinkWriteError`
naming the table or the rows are stored. Contexts come from build events, so the caller commits
their Kafka offsets only after `write` returned; decisions come from the API, which logs each
one after answering. Batching (size/time, per partition) is the caller's job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from clickhouse_connect.driver import Client

from sinks.context_rows import (
    BUILD_CONTEXT_COLUMNS,
    BUILD_CONTEXT_TABLE,
    RETRY_DECISION_COLUMNS,
    RETRY_DECISIONS_TABLE,
    BuildContextRow,
    RetryDecisionRow,
)
from sinks.table_insert import TableInserter, column_getters, to_columns

logger = logging.getLogger(__name__)

_CONTEXT_GETTERS = column_getters(BUILD_CONTEXT_COLUMNS)
_DECISION_GETTERS = column_getters(RETRY_DECISION_COLUMNS)


class BuildContextWriter:
    """Inserts `BuildContextRow`s into `build_context` and `RetryDecisionRow`s into
    `retry_decisions`.

    Synchronous, like `BuildSinkWriter`: asyncio callers run it on the single ClickHouse thread
    (`sinks.gateway.ClickHouseGateway`). Retrying a failed `write` with the same rows is safe:
    `build_context` is a ReplacingMergeTree read with FINAL. `retry_decisions` is a plain
    MergeTree where every row counts: a call that succeeded must not be repeated, and retrying
    one that failed midway may count part of its batch twice. Decisions feed dashboard
    counters, where that is acceptable, and the API logs them in small batches.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._tables = TableInserter(client, database)

    def write(self, contexts: Sequence[BuildContextRow]) -> None:
        """Insert the batch in one insert; an empty batch inserts nothing.

        Raises SinkWriteError naming the table; the caller retries the whole call (and commits
        nothing meanwhile).
        """
        if contexts:
            self._tables.insert(
                BUILD_CONTEXT_TABLE, BUILD_CONTEXT_COLUMNS, to_columns(contexts, _CONTEXT_GETTERS)
            )
        logger.debug("wrote %d build contexts to %s", len(contexts), self._tables.database)

    def write_decisions(self, decisions: Sequence[RetryDecisionRow]) -> None:
        """Insert the batch in one insert; an empty batch inserts nothing.

        Raises SinkWriteError naming the table.
        """
        if decisions:
            self._tables.insert(
                RETRY_DECISIONS_TABLE,
                RETRY_DECISION_COLUMNS,
                to_columns(decisions, _DECISION_GETTERS),
            )
        logger.debug("wrote %d retry decisions to %s", len(decisions), self._tables.database)
