"""How long a table keeps its rows, read from ClickHouse itself.

The retry limit must follow the data, not a number in the code: `build_context` is created with
the configured TTL, an operator may later shorten or lengthen it with
`ALTER TABLE ... MODIFY TTL`, and TTL merges or a manual `DROP PARTITION` remove old days.
`read_retention` reports both halves of that: the TTL as the table declares it now
(`system.tables.engine_full`), and the oldest day that still holds rows (`system.parts`).
It reads the current metadata on every call, so a changed TTL is visible at once on the same
client; callers cache the result for a short while and re-read it.

Behaviour of the engine this relies on, measured on chDB 4.4.0 (engine 26.9.2.1):
- A row already past its TTL is *written* by the insert; a background TTL merge then drops its
  part, 10-25 ms later in our runs (often before the next query). With
  `SYSTEM STOP TTL MERGES` the row stays until `ALTER TABLE ... MATERIALIZE TTL` (which runs
  synchronously, stopped TTL merges or not); `OPTIMIZE ... FINAL` applies the TTL only while
  TTL merges are allowed.
- `ALTER TABLE ... MODIFY TTL` applies the new TTL to existing parts before it returns
  (`materialize_ttl_after_modify = 1` and `mutations_sync = 1` are this engine's defaults;
  where `mutations_sync` is 0 the drop happens in the background after the ALTER returned).
- A part emptied by TTL stays *active* with 0 rows until the cleanup removes it, so only parts
  with rows count here; otherwise a dropped day would still look like the oldest partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from clickhouse_connect.driver import Client

from sinks.exceptions import SinkError
from sinks.identifiers import checked_identifier
from sinks.queries import _query
from sinks.ttl_parsing import TtlInterval, add_intervals, parse_ttl, ttl_clause

_DAY_PARTITION_KEY = re.compile(r"^toYYYYMMDD\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)$")
_DAY_PARTITION_ID = re.compile(r"^\d{8}$")


@dataclass(frozen=True, slots=True)
class TableRetention:
    """A table's retention as ClickHouse reports it at one moment.

    - `ttl_expression`: the table's TTL clause as ClickHouse prints it, e.g.
      `toDateTime(first_seen_at) + toIntervalDay(28)`; None when the table has no TTL.
    - `ttl`: how long after `ttl_column` a row is deleted. For calendar units (month, quarter,
      year) the shortest span the interval can have, so a limit built on it never admits a row
      that may be gone; `expires_at` gives the exact moment. None when the table has no TTL or
      it is not a single unconditional delete rule; `ttl_problem` then says which.
    - `oldest_partition`: the smallest partition id among active parts that hold rows (the
      oldest day for day-partitioned tables), None when the table holds no rows.
    - `oldest_partition_start`: midnight UTC of that day when the table is partitioned by
      `toYYYYMMDD(<column>)` (its columns are UTC), None for other partition schemes.
    - `active_parts`: active parts holding rows. Parts emptied by TTL are not counted.
    - `ttl_intervals`, `partition_key`: the parsed interval terms and the table's partition key
      as printed, for exact arithmetic and diagnostics.
    """

    table: str
    ttl_expression: str | None
    ttl: timedelta | None
    ttl_problem: str | None
    ttl_column: str | None
    oldest_partition: str | None
    oldest_partition_start: datetime | None
    active_parts: int
    ttl_intervals: tuple[TtlInterval, ...] = ()
    partition_key: str = ""

    def expires_at(self, moment: datetime) -> datetime | None:
        """When a row whose `ttl_column` holds `moment` becomes due for deletion; None when the
        TTL is unknown.

        `moment` is first cut to whole seconds, as the TTL's `toDateTime(...)` does. The row may
        live longer: with `ttl_only_drop_parts` its part goes only once every row in it is due,
        and TTL merges run in the background. It is never deleted earlier by the TTL.
        """
        if moment.tzinfo is None:
            raise SinkError("`moment` must be timezone-aware: a naive datetime is ambiguous")
        start = moment.astimezone(timezone.utc).replace(microsecond=0)
        if self.ttl_intervals:
            return add_intervals(start, self.ttl_intervals)
        if self.ttl is not None:
            return start + self.ttl
        return None


def read_retention(client: Client, database: str, table: str) -> TableRetention:
    """The retention of `database.table` now: its TTL and its oldest partition holding rows.

    Raises SinkError when the table does not exist or ClickHouse cannot be asked.
    """
    database = checked_identifier(database)
    table = checked_identifier(table, "table name")
    parameters = {"database": database, "table": table}
    described = _query(
        client,
        "SELECT engine_full, partition_key FROM system.tables"
        " WHERE database = {database:String} AND name = {table:String}",
        parameters,
    )
    if not described:
        raise SinkError(
            f"table {database}.{table} does not exist, so its retention cannot be read: run "
            "the migrations (sinks.migrations.apply_migrations) on this database first"
        )
    engine_full, partition_key = (str(value) for value in described[0])
    oldest, parts = _query(
        client,
        "SELECT min(partition_id), count() FROM system.parts"
        " WHERE database = {database:String} AND table = {table:String}"
        " AND active AND rows > 0",
        parameters,
    )[0]
    expression = ttl_clause(engine_full)
    parsed = parse_ttl(expression)
    oldest_partition = str(oldest) if int(parts) else None
    return TableRetention(
        table=table,
        ttl_expression=expression,
        ttl=parsed.ttl,
        ttl_problem=parsed.problem,
        ttl_column=parsed.column,
        oldest_partition=oldest_partition,
        oldest_partition_start=day_partition_start(partition_key, oldest_partition),
        active_parts=int(parts),
        ttl_intervals=parsed.intervals,
        partition_key=partition_key,
    )


def day_partition_start(partition_key: str, partition_id: str | None) -> datetime | None:
    """Midnight UTC of the day a `toYYYYMMDD(<column>)` partition id names; None for any other
    partition key or an id that is not a date."""
    if partition_id is None or not _DAY_PARTITION_KEY.match(partition_key.strip()):
        return None
    if not _DAY_PARTITION_ID.match(partition_id):
        return None
    try:
        return datetime.strptime(partition_id, "%Y%m%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
