"""The audit migrations against the real engine: they apply once on top of the build tables,
and the tables carry exactly the columns, keys, partitioning, TTL and index the design needs."""

from __future__ import annotations

from datetime import timedelta

from clickhouse_connect.driver import Client

from sinks.audit_writer import AuditSinkWriter
from sinks.migrations import applied_migrations, apply_migrations, load_migrations
from sinks.writer import BuildSinkWriter
from sinks_testkit import T0, event_row, result_row
from sinks_audit_testkit import AUDIT_TABLES, audit_alert, audit_event, audit_repair, audit_state

_DT = "DateTime64(3, 'UTC')"
_LC = "LowCardinality(String)"

EXPECTED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "audit_events": [
        ("audit_id", "String"), ("seq", "UInt64"), ("event_id", "String"), ("event_time", _DT),
        ("project", _LC), ("pipeline", "String"), ("subject_kind", _LC),
        ("subject_id", "String"), ("kind", _LC), ("status_after", _LC), ("decision", _LC),
        ("decision_id", "String"), ("actor", "String"), ("reason", "String"),
        ("ingested_at", _DT),
    ],
    "audit_state": [
        ("audit_id", "String"), ("project", _LC), ("pipeline", "String"),
        ("subject_kind", _LC), ("subject_id", "String"), ("status", _LC), ("decision", _LC),
        ("decision_id", "String"), ("reviewers", "Array(String)"), ("requested_at", _DT),
        ("review_started_at", f"Nullable({_DT})"), ("decided_at", f"Nullable({_DT})"),
        ("synced_at", f"Nullable({_DT})"), ("repaired_at", f"Nullable({_DT})"),
        ("is_open", "UInt8"), ("revision", "UInt64"), ("updated_at", _DT),
    ],
    "audit_repairs": [
        ("repair_id", "String"), ("audit_id", "String"), ("project", _LC), ("mode", _LC),
        ("from_status", _LC), ("to_status", _LC), ("decision_id", "String"),
        ("actor", "String"), ("reason", "String"), ("repaired_at", _DT),
    ],
    "audit_alerts": [
        ("alert_id", "String"), ("audit_id", "String"), ("project", _LC), ("kind", _LC),
        ("episode", "UInt32"), ("age_seconds", "Float64"), ("reviewers", "Array(String)"),
        ("raised_at", _DT),
    ],
}


def _engine_full(client: Client, database: str, table: str) -> str:
    return str(
        client.command(
            "SELECT engine_full FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": database, "t": table},
        )
    )


def _partitions(client: Client, database: str, table: str) -> list[str]:
    rows = client.query(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {db:String} "
        "AND table = {t:String} AND active ORDER BY partition",
        parameters={"db": database, "t": table},
    ).result_rows
    return [str(row[0]) for row in rows]


def test_audit_migrations_apply_on_top_of_the_build_tables_once(
    ch_client: Client, database: str
) -> None:
    shipped = load_migrations()
    build_only = [m for m in shipped if m.version <= 2]
    apply_migrations(ch_client, database, migrations=build_only)
    up_to_audit = [m for m in shipped if m.version <= 4]
    BuildSinkWriter(ch_client, database).write([event_row()], [result_row()])

    applied_now = apply_migrations(ch_client, database, migrations=up_to_audit)
    ddl_after_first = {t: _engine_full(ch_client, database, t) for t in AUDIT_TABLES}
    applied_again = apply_migrations(ch_client, database, migrations=up_to_audit)

    assert [m.file_name for m in applied_now] == [
        "0003_audit_history.sql",
        "0004_audit_repairs_and_alerts.sql",
    ]
    assert applied_again == []
    assert [r.version for r in applied_migrations(ch_client, database)] == [1, 2, 3, 4]
    assert {t: _engine_full(ch_client, database, t) for t in AUDIT_TABLES} == ddl_after_first
    assert ch_client.command(f"SELECT count() FROM {database}.build_events") == 1
    assert ch_client.command(f"SELECT count() FROM {database}.build_results") == 1


def test_audit_tables_have_exactly_the_designed_columns(ch_client: Client, migrated: str) -> None:
    for table, expected in EXPECTED_COLUMNS.items():
        columns = ch_client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String} ORDER BY position",
            parameters={"db": migrated, "t": table},
        ).result_rows
        assert [(str(n), str(t)) for n, t in columns] == expected, table


def test_audit_events_are_day_partitioned_with_raw_retention_dropping_whole_parts(
    ch_client: Client, database: str
) -> None:
    apply_migrations(ch_client, database, raw_retention_days=7, results_retention_days=90)

    engine_full = _engine_full(ch_client, database, "audit_events")

    assert engine_full.startswith("ReplacingMergeTree(ingested_at)")
    assert "PARTITION BY toYYYYMMDD(event_time)" in engine_full
    assert "ORDER BY (project, audit_id, seq, event_id)" in engine_full
    assert "TTL toDateTime(event_time) + toIntervalDay(7)" in engine_full
    assert "ttl_only_drop_parts = 1" in engine_full
    AuditSinkWriter(ch_client, database).write(
        events=[
            audit_event(seq=1, event_time=T0),
            audit_event(seq=2, event_time=T0 + timedelta(days=1)),
        ]
    )
    assert _partitions(ch_client, database, "audit_events") == [
        T0.strftime("%Y%m%d"),
        (T0 + timedelta(days=1)).strftime("%Y%m%d"),
    ]


def test_result_tables_are_month_partitioned_with_results_retention(
    ch_client: Client, database: str
) -> None:
    apply_migrations(ch_client, database, raw_retention_days=7, results_retention_days=90)
    expected = {
        "audit_state": (
            "ReplacingMergeTree(revision)",
            "PARTITION BY toYYYYMM(requested_at)",
            "ORDER BY (project, audit_id)",
            "TTL toDateTime(requested_at) + toIntervalDay(90)",
        ),
        "audit_repairs": (
            "ReplacingMergeTree",
            "PARTITION BY toYYYYMM(repaired_at)",
            "ORDER BY (project, audit_id, repair_id)",
            "TTL toDateTime(repaired_at) + toIntervalDay(90)",
        ),
        "audit_alerts": (
            "ReplacingMergeTree",
            "PARTITION BY toYYYYMM(raised_at)",
            "ORDER BY (project, audit_id, alert_id)",
            "TTL toDateTime(raised_at) + toIntervalDay(90)",
        ),
    }
    for table, (engine, partition, order, ttl) in expected.items():
        engine_full = _engine_full(ch_client, database, table)
        assert engine_full.startswith(f"{engine} "), engine_full
        for clause in (partition, order, ttl):
            assert clause in engine_full, (table, clause, engine_full)


def test_every_revision_of_an_audit_lands_in_its_requested_at_partition(
    ch_client: Client, migrated: str
) -> None:
    # Revisions written a month apart still share requested_at, hence one partition, which is
    # what lets FINAL pick the newest one.
    writer = AuditSinkWriter(ch_client, migrated)
    later = T0 + timedelta(days=40)
    writer.write(states=[audit_state(revision=1)])
    writer.write(states=[audit_state(revision=2, status="DECIDED", decided_at=later,
                                     updated_at=later)])
    writer.write(repairs=[audit_repair()], alerts=[audit_alert()])

    assert _partitions(ch_client, migrated, "audit_state") == [T0.strftime("%Y%m")]
    assert _partitions(ch_client, migrated, "audit_repairs") == [
        (T0 + timedelta(minutes=30)).strftime("%Y%m")
    ]
    assert _partitions(ch_client, migrated, "audit_alerts") == [
        (T0 + timedelta(hours=1)).strftime("%Y%m")
    ]


def test_audit_events_have_a_bloom_filter_on_audit_id(ch_client: Client, migrated: str) -> None:
    indexes = ch_client.query(
        "SELECT table, name, expr, type_full FROM system.data_skipping_indices "
        "WHERE database = {db:String} AND startsWith(table, 'audit_') ORDER BY table",
        parameters={"db": migrated},
    ).result_rows

    assert indexes == [("audit_events", "idx_audit_id", "audit_id", "bloom_filter(0.01)")]
