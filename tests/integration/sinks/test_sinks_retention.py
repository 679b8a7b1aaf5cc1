"""`read_retention` against the real engine: the TTL a table was created with, a TTL changed
with ALTER TABLE ... MODIFY TTL (seen at once on the same client, no reconnect), and the oldest
day partition that still holds rows, also after TTL or an operator dropped days."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from clickhouse_connect.driver import Client

from sinks.context_writer import BuildContextWriter
from sinks.exceptions import SinkError
from sinks.migrations import MIGRATIONS_TABLE, apply_migrations
from sinks.retention import read_retention
from sinks.ttl_parsing import NO_TTL
from sinks_context_testkit import (
    CONTEXT_TABLE,
    DECISIONS_TABLE,
    context_row,
    decision_row,
    modify_ttl,
    stop_ttl_merges,
)
from sinks_testkit import T0

OLD = T0 - timedelta(days=20)
MIDDLE = T0 - timedelta(days=6)


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def test_a_fresh_table_shows_the_configured_retention_and_no_partitions(
    ch_client: Client, database: str
) -> None:
    apply_migrations(ch_client, database, context_retention_days=10)

    retention = read_retention(ch_client, database, CONTEXT_TABLE)

    assert retention.table == CONTEXT_TABLE
    assert retention.ttl_expression == "toDateTime(first_seen_at) + toIntervalDay(10)"
    assert retention.ttl == timedelta(days=10)
    assert retention.ttl_problem is None
    assert retention.ttl_column == "first_seen_at"
    assert retention.partition_key == "toYYYYMMDD(first_seen_at)"
    assert (retention.oldest_partition, retention.oldest_partition_start) == (None, None)
    assert retention.active_parts == 0


def test_modify_ttl_is_seen_on_the_next_read_without_reconnecting(
    ch_client: Client, migrated: str
) -> None:
    assert read_retention(ch_client, migrated, CONTEXT_TABLE).ttl == timedelta(days=28)

    modify_ttl(ch_client, migrated, "toDateTime(first_seen_at) + INTERVAL 3 DAY")
    after_days = read_retention(ch_client, migrated, CONTEXT_TABLE)
    modify_ttl(ch_client, migrated, "toDateTime(first_seen_at) + INTERVAL 36 HOUR")
    after_hours = read_retention(ch_client, migrated, CONTEXT_TABLE)

    assert after_days.ttl_expression == "toDateTime(first_seen_at) + toIntervalDay(3)"
    assert after_days.ttl == timedelta(days=3)
    assert after_hours.ttl_expression == "toDateTime(first_seen_at) + toIntervalHour(36)"
    assert after_hours.ttl == timedelta(hours=36)
    assert after_hours.ttl_column == "first_seen_at"


def test_old_and_recent_builds_give_the_oldest_day_partition(
    ch_client: Client, migrated: str
) -> None:
    BuildContextWriter(ch_client, migrated).write(
        [
            context_row("b-recent", first_seen_at=T0),
            context_row("b-middle", first_seen_at=MIDDLE),
            context_row("b-old", first_seen_at=OLD + timedelta(hours=11, minutes=59)),
        ]
    )

    retention = read_retention(ch_client, migrated, CONTEXT_TABLE)

    assert retention.oldest_partition == OLD.strftime("%Y%m%d")
    assert retention.oldest_partition_start == _midnight(OLD)
    assert retention.oldest_partition_start.tzinfo is not None
    assert retention.active_parts == 3  # one part per day partition of the single insert


def test_the_oldest_partition_moves_when_a_shorter_ttl_drops_old_days(
    ch_client: Client, migrated: str
) -> None:
    """The old day's part is emptied by the TTL but, measured on chDB 4.4.0, stays *active* in
    system.parts with 0 rows until the cleanup removes it; `read_retention` counts only parts
    with rows, so the dropped day is not reported as the oldest."""
    BuildContextWriter(ch_client, migrated).write(
        [context_row("b-old", first_seen_at=OLD), context_row("b-recent", first_seen_at=T0)]
    )
    assert read_retention(ch_client, migrated, CONTEXT_TABLE).oldest_partition == OLD.strftime(
        "%Y%m%d"
    )

    modify_ttl(ch_client, migrated, "toDateTime(first_seen_at) + INTERVAL 3 DAY")
    retention = read_retention(ch_client, migrated, CONTEXT_TABLE)

    assert retention.ttl == timedelta(days=3)
    assert retention.oldest_partition == T0.strftime("%Y%m%d")
    assert retention.oldest_partition_start == _midnight(T0)
    assert retention.active_parts == 1


def test_an_expired_row_counts_until_the_ttl_is_applied(ch_client: Client, migrated: str) -> None:
    stop_ttl_merges(ch_client, migrated)
    expired = T0 - timedelta(days=40)
    BuildContextWriter(ch_client, migrated).write(
        [context_row("b-expired", first_seen_at=expired), context_row("b-recent")]
    )
    assert read_retention(ch_client, migrated, CONTEXT_TABLE).oldest_partition == (
        expired.strftime("%Y%m%d")
    )

    ch_client.command(
        f"ALTER TABLE {migrated}.{CONTEXT_TABLE} MATERIALIZE TTL", settings={"mutations_sync": 1}
    )

    assert read_retention(ch_client, migrated, CONTEXT_TABLE).oldest_partition == (
        T0.strftime("%Y%m%d")
    )


def test_a_day_dropped_by_an_operator_is_no_longer_the_oldest(
    ch_client: Client, migrated: str
) -> None:
    BuildContextWriter(ch_client, migrated).write(
        [context_row("b-old", first_seen_at=OLD), context_row("b-middle", first_seen_at=MIDDLE)]
    )

    ch_client.command(
        f"ALTER TABLE {migrated}.{CONTEXT_TABLE} DROP PARTITION ID '{OLD.strftime('%Y%m%d')}'"
    )

    assert read_retention(ch_client, migrated, CONTEXT_TABLE).oldest_partition == (
        MIDDLE.strftime("%Y%m%d")
    )


@pytest.mark.parametrize(
    "first_seen",
    [
        datetime(2026, 1, 31, 10, 0, 0, 500_000, tzinfo=timezone.utc),
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc),
        datetime(2026, 11, 30, 0, 0, 0, tzinfo=timezone.utc),
    ],
)
def test_a_month_ttl_expires_rows_exactly_when_the_engine_says(
    ch_client: Client, migrated: str, first_seen: datetime
) -> None:
    modify_ttl(ch_client, migrated, "toDateTime(first_seen_at) + INTERVAL 1 MONTH")
    retention = read_retention(ch_client, migrated, CONTEXT_TABLE)
    engine_says = ch_client.query(
        "SELECT toDateTime({t:DateTime64(3, 'UTC')}) + toIntervalMonth(1)",
        parameters={"t": first_seen},
        tz_mode="aware",
    ).result_rows[0][0]

    assert retention.ttl_expression == "toDateTime(first_seen_at) + toIntervalMonth(1)"
    assert retention.ttl == timedelta(days=28)
    assert retention.expires_at(first_seen) == engine_says


def test_a_removed_ttl_is_reported_as_no_ttl(ch_client: Client, migrated: str) -> None:
    ch_client.command(f"ALTER TABLE {migrated}.{CONTEXT_TABLE} REMOVE TTL")

    retention = read_retention(ch_client, migrated, CONTEXT_TABLE)

    assert (retention.ttl_expression, retention.ttl, retention.ttl_column) == (None, None, None)
    assert retention.ttl_problem == NO_TTL
    assert retention.expires_at(T0) is None


def test_a_conditional_ttl_is_reported_with_its_text(ch_client: Client, migrated: str) -> None:
    modify_ttl(
        ch_client, migrated, "toDateTime(first_seen_at) + INTERVAL 4 DAY DELETE WHERE project = 'a'"
    )

    retention = read_retention(ch_client, migrated, CONTEXT_TABLE)

    assert retention.ttl_expression == (
        "toDateTime(first_seen_at) + toIntervalDay(4) WHERE project = 'a'"
    )
    assert retention.ttl is None
    assert retention.ttl_problem is not None and "WHERE" in retention.ttl_problem


def test_month_partitions_have_an_id_but_no_day_start(ch_client: Client, migrated: str) -> None:
    BuildContextWriter(ch_client, migrated).write_decisions([decision_row()])

    retention = read_retention(ch_client, migrated, DECISIONS_TABLE)

    assert retention.ttl == timedelta(days=400)
    assert retention.ttl_column == "decided_at"
    assert retention.oldest_partition == decision_row().decided_at.strftime("%Y%m")
    assert retention.oldest_partition_start is None


def test_a_table_without_ttl_says_so(ch_client: Client, migrated: str) -> None:
    retention = read_retention(ch_client, migrated, MIGRATIONS_TABLE)

    assert retention.ttl is None
    assert retention.ttl_problem == NO_TTL
    assert retention.oldest_partition == "all"  # unpartitioned MergeTree
    assert retention.oldest_partition_start is None


def test_a_missing_table_raises_sink_error_saying_to_migrate(
    ch_client: Client, database: str
) -> None:
    with pytest.raises(SinkError, match=f"{database}.{CONTEXT_TABLE} does not exist"):
        read_retention(ch_client, database, CONTEXT_TABLE)


def test_names_that_are_not_identifiers_are_refused(ch_client: Client, migrated: str) -> None:
    with pytest.raises(SinkError, match="invalid table name"):
        read_retention(ch_client, migrated, "build_context; DROP TABLE x")
