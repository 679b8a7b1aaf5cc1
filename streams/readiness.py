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
