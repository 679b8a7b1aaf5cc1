"""Migrations against the real embedded engine: applied once, recorded, tamper-evident, and
the tables carry the partitioning, TTL and indexes the design relies on."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from clickhouse_connect.driver import Client

from sinks.connection import open_client
from sinks.exceptions import MigrationError
from sinks.migrations import Migration, applied_migrations, apply_migrations, load_migrations
from sinks.writer import BuildSinkWriter
from sinks_testkit import T0, event_row, result_row


def _engine_full(client: Client, database: str, table: str) -> str:
    return str(
        client.command(
            "SELECT engine_full FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": database, "t": table},
        )
    )


def _tables(client: Client, database: str) -> set[str]:
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
    ).result_rows
    return {str(row[0]) for row in rows}


def test_first_apply_creates_tables_and_records_every_shipped_migration(
    ch_client: Client, database: str
) -> None:
    shipped = load_migrations()

    applied_now = apply_migrations(ch_client, database)

    assert [m.version for m in applied_now] == [m.version for m in shipped]
    assert {"build_events", "build_results", "schema_migrations"} <= _tables(ch_client, database)
    recorded = applied_migrations(ch_client, database)
    assert [(r.version, r.name, r.checksum) for r in recorded] == [
        (m.version, m.name, m.checksum) for m in shipped
    ]
    applied_at = ch_client.query(
        f"SELECT min(applied_at) > now64(3) - INTERVAL 1 HOUR FROM {database}.schema_migrations"
    ).result_rows[0][0]
    assert applied_at == 1


def test_second_apply_changes_nothing(ch_client: Client, database: str) -> None:
    apply_migrations(ch_client, database)
    tables = ("build_events", "build_results")
    ddl_before = {t: _engine_full(ch_client, database, t) for t in tables}

    applied_again = apply_migrations(ch_client, database)

    assert applied_again == []
    raw_records = ch_client.command(f"SELECT count() FROM {database}.schema_migrations")
    assert raw_records == len(load_migrations())
    assert {t: _engine_full(ch_client, database, t) for t in ddl_before} == ddl_before


def test_existing_data_survives_a_repeated_apply(ch_client: Client, database: str) -> None:
    apply_migrations(ch_client, database)
    BuildSinkWriter(ch_client, database).write([event_row()], [result_row()])

    apply_migrations(ch_client, database)

    assert ch_client.command(f"SELECT count() FROM {database}.build_events") == 1
    assert ch_client.command(f"SELECT count() FROM {database}.build_results") == 1


def test_edited_applied_migration_is_rejected_naming_the_file_before_anything_else_runs(
    ch_client: Client, database: str
) -> None:
    shipped = load_migrations()
    apply_migrations(ch_client, database)
    edited = [replace(shipped[0], sql=shipped[0].sql + "\n-- sneaky edit\n"), *shipped[1:]]
    extra = Migration(
        version=9001,
        name="would_run_next",
        file_name="9001_would_run_next.sql",
        sql="CREATE TABLE IF NOT EXISTS {database}.must_not_exist (a UInt8) ENGINE = Memory;",
    )

    with pytest.raises(MigrationError, match=shipped[0].file_name) as raised:
        apply_migrations(ch_client, database, migrations=[*edited, extra])

    assert "new migration" in str(raised.value)
    assert "must_not_exist" not in _tables(ch_client, database)


def test_a_new_migration_file_is_applied_alone_on_next_start(
    ch_client: Client, database: str
) -> None:
    apply_migrations(ch_client, database)
    added = Migration(
        version=9002,
        name="add_comment_column",
        file_name="9002_add_comment_column.sql",
        sql=(
            "-- two statements in one file\n"
            "ALTER TABLE {database}.build_results ADD COLUMN IF NOT EXISTS note String;\n"
            "ALTER TABLE {database}.build_events ADD COLUMN IF NOT EXISTS note String;\n"
        ),
    )

    applied_now = apply_migrations(ch_client, database, migrations=[*load_migrations(), added])

    assert applied_now == [added]
    assert applied_migrations(ch_client, database)[-1].version == 9002
    columns = ch_client.query(
        "SELECT table FROM system.columns WHERE database = {db:String} AND name = 'note' "
        "ORDER BY table",
        parameters={"db": database},
    ).result_rows
    assert columns == [("build_events",), ("build_results",)]


def test_failing_statement_raises_migration_error_and_is_not_recorded(
    ch_client: Client, database: str
) -> None:
    broken = Migration(
        version=1, name="broken", file_name="0001_broken.sql", sql="CREATE TABLE nonsense (;"
    )

    with pytest.raises(MigrationError, match="0001_broken.sql"):
        apply_migrations(ch_client, database, migrations=[broken])

    assert applied_migrations(ch_client, database) == []


def test_concurrent_apply_from_two_clients_leaves_one_record_per_version(
    ch_client: Client, database: str
) -> None:
    # Server mode lets two workers start at once; both may run the idempotent DDL.
    second = open_client("chdb://memory", database)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def start(client: Client) -> None:
        try:
            barrier.wait()
            apply_migrations(client, database)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(c,)) for c in (ch_client, second)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        second.close()

    assert errors == []
    assert [r.version for r in applied_migrations(ch_client, database)] == [
        m.version for m in load_migrations()
    ]


def test_build_events_is_day_partitioned_with_ttl_that_drops_whole_parts(
    ch_client: Client, migrated: str
) -> None:
    engine_full = _engine_full(ch_client, migrated, "build_events")
    assert engine_full.startswith("ReplacingMergeTree(ingested_at)")
    assert "PARTITION BY toYYYYMMDD(event_time)" in engine_full
    assert "ORDER BY (project, pipeline, build_id, seq)" in engine_full
    assert "TTL toDateTime(event_time) + toIntervalDay(30)" in engine_full
    assert "ttl_only_drop_parts = 1" in engine_full

    BuildSinkWriter(ch_client, migrated).write(
        [event_row(seq=1, event_time=T0), event_row(seq=2, event_time=T0 + timedelta(days=1))], []
    )
    partitions = ch_client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {db:String} "
        "AND table = 'build_events' AND active ORDER BY partition",
        parameters={"db": migrated},
    ).result_rows
    assert partitions == [
        (T0.strftime("%Y%m%d"),),
        ((T0 + timedelta(days=1)).strftime("%Y%m%d"),),
    ]


def test_build_results_is_month_partitioned_by_first_seen_with_its_own_retention(
    ch_client: Client, migrated: str
) -> None:
    engine_full = _engine_full(ch_client, migrated, "build_results")
    assert engine_full.startswith("ReplacingMergeTree(version)")
    assert "PARTITION BY toYYYYMM(first_seen_at)" in engine_full
    assert "ORDER BY (project, pipeline, build_id)" in engine_full
    assert "TTL toDateTime(first_seen_at) + toIntervalDay(400)" in engine_full

    BuildSinkWriter(ch_client, migrated).write([], [result_row()])
    partitions = ch_client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {db:String} "
        "AND table = 'build_results' AND active",
        parameters={"db": migrated},
    ).result_rows
    assert partitions == [(T0.strftime("%Y%m"),)]


def test_retention_parameters_reach_the_ttl_clauses(ch_client: Client, database: str) -> None:
    apply_migrations(ch_client, database, raw_retention_days=7, results_retention_days=90)

    assert "+ toIntervalDay(7)" in _engine_full(ch_client, database, "build_events")
    assert "+ toIntervalDay(90)" in _engine_full(ch_client, database, "build_results")


def test_both_tables_have_a_bloom_filter_on_build_id(ch_client: Client, migrated: str) -> None:
    indexes = ch_client.query(
        "SELECT table, expr, type FROM system.data_skipping_indices WHERE database = {db:String} "
        "AND table IN ('build_events', 'build_results') ORDER BY table",
        parameters={"db": migrated},
    ).result_rows
    assert indexes == [
        ("build_events", "build_id", "bloom_filter"),
        ("build_results", "build_id", "bloom_filter"),
    ]


def test_non_positive_retention_is_rejected(ch_client: Client, database: str) -> None:
    with pytest.raises(MigrationError, match="raw_retention_days"):
        apply_migrations(ch_client, database, raw_retention_days=0)
