"""Whether a worker's tables are usable: assigned partitions and no recovery or rebalance running.

Timers read tables; before recovery ends a table is incomplete, and a timer acting on it would
miss (or repeat) what the changelog still holds.
"""

from __future__ import annotations

from typing import cast

import faust
from faust.tables.manager import TableManager


def tables_ready(app: faust.App) -> bool:
    consumer_ready = app.consumer is not None and bool(app.consumer.assignment())
    return consumer_ready and not app.rebalancing and not cast(TableManager, app.tables).recovery.in_recovery


def tables_unavailable(app: faust.App) -> str | None:
    """Why this worker cannot answer from its tables right now (None: it can).

    A key-routed lookup must not read a table that is being rebalanced or restored: the key
    would look absent (a false 404) until the changelog is replayed.
    """
    if app.should_stop:
        return "this worker is shutting down; its partitions are moving to the other workers"
    if app.consumer is None or not app.consumer.assignment():
        return "no Kafka partitions assigned yet (the consumer group is still joining)"
    if app.rebalancing:
        return "partitions are being rebalanced between the workers"
    recovery = cast(TableManager, app.tables).recovery
    if recovery.in_recovery:
        return f"the table is being restored from its changelog ({recovery.active_remaining_total()} records to go)"
    return None
