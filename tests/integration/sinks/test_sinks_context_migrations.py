"""The retry-context migration against the real engine: it applies once on top of the earlier
migrations, and both tables carry exactly the columns, keys, partitioning, configured TTLs and
index the retry limit relies on."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver import Client

from sinks.context_writer import BuildContextWriter
from sinks.exceptions import MigrationError
from sinks.migrations import applied_migrations, apply_migrations, load_migrations
from sinks.writer import BuildSinkWriter
from sinks_context_testkit import (
    CONTEXT_TABLE,
    DECISIONS_TABLE,
    context_row,
    decision_row,
    engine_full,
)
from sinks_testkit import event_row, raw_count, result_row

_LC = "LowCardinality(String)"
_DT = "DateTime64(3, 'UTC')"

CONTEXT_COLUMNS = [
    ("project", _LC), ("pipeline", _LC), ("build_id", "String"), ("first_seen_at", _DT),
    ("started_at", f"Nullable({_DT})"), ("finished_at", f"Nullable({_DT})"),
    ("status", _LC), ("trigger_reason", _LC), ("trigger_user", "String"), ("branch", "String"),
    ("commit_sha", "String"), ("executor", "String"), ("variables", "Map(String, String)"),
    ("revision", "UInt64"), ("ingested_at", _DT),
]
DECISION_COLUMNS = [
    ("decided_at", _DT), ("project", _LC), ("pipeline", _LC), ("build_id", "String"),
    ("action", _LC), ("eligible", "Bool"), ("reason", _LC),
    ("build_started_at", f"Nullable({_DT})"), ("age_seconds", "Float64"),
    ("retention_seconds", "Nullable(Float64)"), ("deadline", f"Nullable({_DT})"),
    ("retry_id", "String"),
]


def _columns(client: Client, database: str, table: str) -> list[tuple[str, str]]:
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} "
        "AND table = {t:String} ORDER BY position",
        parameters={"db": database, "t": table},
    ).result_rows
    return [(str(name), str(kind)) for name, kind in rows]


def test_context_migration_applies_on_top_of_0001_to_0005_once(
    ch_client: Client, database: str
) -> None:
    before_context = [m for m in load_migrations() if m.version <= 5]
    apply_migrations(ch_client, database, migrations=before_context)
    BuildSinkWriter(ch_client, database).write([event_row()], [result_row()])

    up_to_context = [m for m in load_migrations() if m.version <= 6]
    applied_now = apply_migrations(ch_client, database, migrations=up_to_context)
    ddl_after_first = engine_full(ch_client, database, CONTEXT_TABLE)
    BuildContextWriter(ch_client, database).write([context_row()])
    applied_again = apply_migrations(ch_client, database, migrations=up_to_context)

    assert [m.file_name for m in applied_now] == ["0006_build_context.sql"]
    assert applied_again == []
    assert [r.version for r in applied_migrations(ch_client, database)] == [1, 2, 3, 4, 5, 6]
    assert engine_full(ch_client, database, CONTEXT_TABLE) == ddl_after_first
    tables = ("build_events", "build_results", CONTEXT_TABLE)
    assert {t: raw_count(ch_client, database, t) for t in tables} == dict.fromkeys(tables, 1)


def test_both_tables_have_exactly_the_designed_columns(ch_client: Client, migrated: str) -> None:
    assert _columns(ch_client, migrated, CONTEXT_TABLE) == CONTEXT_COLUMNS
    assert _columns(ch_client, migrated, DECISIONS_TABLE) == DECISION_COLUMNS


def test_build_context_is_day_partitioned_with_the_configured_context_retention(
    ch_client: Client, database: str
) -> None:
    apply_migrations(
        ch_client, database, raw_retention_days=7, results_retention_days=90,
        context_retention_days=10,
    )

    ddl = engine_full(ch_client, database, CONTEXT_TABLE)

    assert ddl.startswith("ReplacingMergeTree(revision) ")
    assert "PARTITION BY toYYYYMMDD(first_seen_at)" in ddl
    assert "ORDER BY (project, pipeline, build_id)" in ddl
    assert "TTL toDateTime(first_seen_at) + toIntervalDay(10) SETTINGS" in ddl
    assert "ttl_only_drop_parts = 1" in ddl
    assert "+ toIntervalDay(7)" in engine_full(ch_client, database, "build_events")


def test_the_default_context_retention_is_28_days(ch_client: Client, migrated: str) -> None:
    assert "TTL toDateTime(first_seen_at) + toIntervalDay(28) SETTINGS" in engine_full(
        ch_client, migrated, CONTEXT_TABLE
    )


def test_retry_decisions_are_month_partitioned_with_results_retention(
    ch_client: Client, database: str
) -> None:
    apply_migrations(ch_client, database, results_retention_days=90)
    BuildContextWriter(ch_client, database).write_decisions([decision_row()])

    ddl = engine_full(ch_client, database, DECISIONS_TABLE)

    assert ddl.startswith("MergeTree ")
    assert "PARTITION BY toYYYYMM(decided_at)" in ddl
    assert "ORDER BY (project, decided_at, build_id)" in ddl
    assert ddl.endswith(
        "TTL toDateTime(decided_at) + toIntervalDay(90) SETTINGS index_granularity = 8192"
    )
    partitions = ch_client.query(
        "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} "
        "AND table = {t:String} AND active",
        parameters={"db": database, "t": DECISIONS_TABLE},
    ).result_rows
    assert partitions == [(decision_row().decided_at.strftime("%Y%m"),)]


def test_build_context_has_a_bloom_filter_on_build_id(ch_client: Client, migrated: str) -> None:
    indexes = ch_client.query(
        "SELECT table, name, expr, type_full FROM system.data_skipping_indices "
        "WHERE database = {db:String} AND table = {t:String}",
        parameters={"db": migrated, "t": CONTEXT_TABLE},
    ).result_rows

    assert indexes == [(CONTEXT_TABLE, "idx_build_id", "build_id", "bloom_filter(0.01)")]


@pytest.mark.parametrize("days", [0, -3, True])
def test_non_positive_context_retention_is_rejected(
    ch_client: Client, database: str, days: int
) -> None:
    with pytest.raises(MigrationError, match="context_retention_days"):
        apply_migrations(ch_client, database, context_retention_days=days)
